//! The four seed pages' request examples, as written, against a fresh sandbox.

mod common;
use common::*;

#[tokio::test]
async fn seed_examples_succeed() {
    let app = spawn_app().await;
    let r = app.ok(&lianbei("1000")).await;
    assert_eq!(r["result"]["alisp_code"], 200);
    let r = app.ok(&supplier(&supplier_example())).await;
    assert_eq!(r["result"]["success"], true, "{r}");
    let r = app.ok(&pay(&pay_example())).await;
    assert_eq!(r["succ"], true, "{r}");
    let r = app.ok(&opentrade(&opentrade_example())).await;
    assert_eq!(r["result"]["success"], true, "{r}");
}
