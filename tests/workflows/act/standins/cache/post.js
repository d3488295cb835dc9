// Runs standins.py's save after a successful job (post-if: success()).
const { execFileSync } = require("child_process");
const path = require("path");
execFileSync(process.env.MLGATE_ACT_PYTHON, [path.join(process.env.MLGATE_ACT_STANDINS, "standins.py"), "cache-save"], { stdio: "inherit" });
