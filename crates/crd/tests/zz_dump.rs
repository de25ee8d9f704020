#[test]
fn dump() {
    let s = schemars::schema_for!(sluice_crd::types::IngressRoute);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    let s = schemars::schema_for!(sluice_crd::types::TraefikService);
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
}
