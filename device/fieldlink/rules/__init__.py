# Rules on the node: verify.py (program verifier), vm.py (reference VM), engine.py (RuleEngine:
# load/verify/hot-swap/persist, tick), replay.py (CSV replay shared with the host simulator),
# opcodes.py (format constants shared with the host compiler). Spec: docs/rules.md.
