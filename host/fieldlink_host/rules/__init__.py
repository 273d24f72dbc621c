"""Rules on the host: parser (YAML with line/column tracking), compiler (-> verified bytecode),
simulate (replay a CSV through the device VM), quantities (driver -> rule inputs). Spec: docs/rules.md."""
