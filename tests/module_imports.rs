//! The host shim must implement every FreeSWITCH symbol the module imports, so it can never fall
//! silently behind the module; and the module must import nothing from FreeSWITCH beyond that.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

fn symbols(path: &std::path::Path, args: &[&str]) -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(args)
        .arg(path)
        .output()
        .expect("nm (binutils) is installed");
    assert!(
        out.status.success(),
        "nm {args:?} {} failed",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

#[test]
fn every_freeswitch_symbol_the_module_imports_is_implemented_by_the_shim() {
    let module = support::module_path();
    let imported: BTreeSet<String> = symbols(&module, &["-D", "--undefined-only"])
        .into_iter()
        .filter(|s| s.starts_with("switch_") || s.starts_with("fspr_") || s.starts_with("apr_"))
        .collect();
    assert!(
        imported.contains("switch_log_printf") && imported.contains("switch_xml_open_cfg"),
        "unexpected import list: {imported:?}"
    );
    let shim = support::shim_path();
    let exported = symbols(&shim, &["-D", "--defined-only"]);
    let missing: Vec<&String> = imported.iter().filter(|s| !exported.contains(*s)).collect();
    assert!(missing.is_empty(), "the host shim lacks {missing:?}");
}

#[test]
fn the_module_exports_its_interface_table_under_freeswitchs_name() {
    let exported = symbols(&support::module_path(), &["-D", "--defined-only"]);
    assert!(exported.contains("mod_natterbox_sf_module_interface"));
}
