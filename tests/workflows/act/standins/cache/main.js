// Runs standins.py's restore with the harness's Python (inputs arrive as INPUT_* variables).
const { execFileSync } = require("child_process");
const path = require("path");
execFileSync(process.env.MLGATE_ACT_PYTHON, [path.join(process.env.MLGATE_ACT_STANDINS, "standins.py"), "cache-restore"], { stdio: "inherit" });
