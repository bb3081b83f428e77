//! Tests that need PyPI. The original's Python client from PyPI (`unicorn-binance-local-depth-cache`, its `Cluster`
//! module), unchanged, against our restapi: `tests/compat/run.sh` in a virtualenv it creates.
//!
//! Needs PyPI (pip installs the client on first use), so it runs when `UBDCC_COMPAT=1`, as
//! `scripts/test` sets it; without, it says so and passes.

use std::process::Command;
use std::time::Duration;

use crate::support::http::get_json;
use crate::support::rig::ClusterRig;

#[test]
fn the_original_python_client_works_unchanged() {
    if std::env::var_os("UBDCC_COMPAT").is_none_or(|v| v != "1") {
        println!("skipped: set UBDCC_COMPAT=1 to run the PyPI client against a cluster");
        return;
    }
    let rig = ClusterRig::start("py", 20, 2);
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

#[test]
fn the_openapi_document_holds_under_fuzzing_and_metrics_parse() {
    if std::env::var_os("UBDCC_COMPAT").is_none_or(|v| v != "1") {
        println!("skipped: set UBDCC_COMPAT=1 to fuzz the API and parse /metrics (needs PyPI)");
        return;
    }
    let rig = ClusterRig::start("oa", 2, 1);
    let created = get_json(
        &rig.local.address,
        "/create_depthcache?exchange=binance.com&market=SIM0USDT",
    );
    assert_eq!(created["result"], "OK", "{created}");
    let path = "/get_asks?exchange=binance.com&market=SIM0USDT&limit_count=1";
    rig.wait_served(&rig.local.address, path, Duration::from_secs(30));
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/tests/openapi/run.sh"))
        .current_dir(root)
        .env("UBDCC_RESTAPI_URL", format!("http://{}", rig.local.address))
        .env("UBDCC_MGMT_URL", format!("http://{}", rig.mgmt.address))
        .env("UBDCC_DCN_URL", format!("http://{}", rig.dcns[0].address))
        .status()
        .expect("tests/openapi/run.sh starts");
    assert!(
        status.success(),
        "the OpenAPI / metrics checks failed: {status}"
    );
}
