//! The original's Python client from PyPI (`unicorn-binance-local-depth-cache`, its `Cluster`
//! module), unchanged, against our restapi: `tests/compat/run.sh` in a virtualenv it creates.
//!
//! Needs PyPI (pip installs the client on first use), so it runs when `UBDCC_COMPAT=1`, as
//! `scripts/test` sets it; without, it says so and passes.

use std::process::Command;

use crate::gateway::Rig;

#[test]
fn the_original_python_client_works_unchanged() {
    if std::env::var_os("UBDCC_COMPAT").is_none_or(|v| v != "1") {
        println!("skipped: set UBDCC_COMPAT=1 to run the PyPI client against a cluster");
        return;
    }
    let rig = Rig::start("py", 20, 2);
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/tests/compat/run.sh"))
        .current_dir(root)
        .env("UBDCC_RESTAPI_URL", format!("http://{}", rig.local.address))
        .env("UBDCC_SIM_URL", format!("http://{}", rig.sim.address))
        .status()
        .expect("tests/compat/run.sh starts");
    assert!(
        status.success(),
        "the PyPI client's compatibility tests failed: {status}"
    );
}
