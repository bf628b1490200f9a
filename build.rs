//! Makes sure the dashboard's and the API docs' third-party libraries are installed from the
//! npm registry (pinned by web/package-lock.json) before they are embedded.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/chart.js/package.json");
    println!("cargo:rerun-if-changed=web/node_modules/swagger-ui-dist/package.json");
    let needed = [
        Path::new("web/node_modules/chart.js/dist/chart.umd.min.js"),
        Path::new("web/node_modules/swagger-ui-dist/swagger-ui-bundle.js"),
    ];
    let installed = || needed.iter().all(|p| p.exists());
    if installed() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir("web")
        .status();
    match status {
        Ok(s) if s.success() && installed() => {}
        Ok(s) => panic!(
            "`npm ci` in web/ failed ({s}): the dashboard needs Chart.js and Swagger UI from the npm registry, pinned in web/package-lock.json"
        ),
        Err(e) => panic!(
            "building rta needs npm to install the dashboard's Chart.js and Swagger UI (web/package-lock.json), but `npm` could not run: {e}. Install Node.js and npm, then build again."
        ),
    }
}
