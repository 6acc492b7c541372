//! Generates the FreeSWITCH bindings for mod_natterbox_sf and builds the host shim the
//! integration tests load the module into.
//!
//! Headers come from, in order: `FREESWITCH_INCLUDE_DIR` (the directory holding `switch.h`),
//! `FREESWITCH_PREFIX` (`$prefix/include/freeswitch`), `pkg-config freeswitch`, and last the
//! pinned `fswtch-src` crate (FreeSWITCH's own headers, plus `include/fswtch-compat` for the
//! `switch_am_config.h` that configure would write). The build never guesses beyond that.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The FreeSWITCH core functions the module calls: each is exported by FreeSWITCH 1.10 and by
/// the newer headers of fswtch-src with the same signature. tests/module_imports.rs checks that
/// the host shim implements every one the `.so` imports.
const FUNCTIONS: &[&str] = &[
    "switch_loadable_module_create_module_interface",
    "switch_loadable_module_create_interface",
    "switch_log_printf",
    "switch_core_session_ctl",
    "switch_core_session_get_loglevel",
    "switch_xml_open_cfg",
    "switch_xml_toxml_ex",
    "switch_xml_free",
    "switch_core_session_get_channel",
    "switch_core_session_get_uuid",
    "switch_channel_get_variable_dup",
    "switch_channel_set_variable_var_check",
    "switch_event_reserve_subclass_detailed",
    "switch_event_free_subclass_detailed",
    "switch_event_create_subclass_detailed",
    "switch_event_add_header_string",
    "switch_event_get_header_idx",
    "switch_event_fire_detailed",
    "switch_event_destroy",
    "switch_event_bind_removable",
    "switch_event_unbind",
    // Call control (agents' commands): the API commands as FreeSWITCH's console runs them.
    "switch_api_execute",
    "switch_console_stream_write",
    "switch_console_stream_raw_write",
];

struct Headers {
    source: String,
    include_dirs: Vec<PathBuf>,
}

fn from_dir(dir: PathBuf, source: &str) -> Option<Headers> {
    dir.join("switch.h").is_file().then(|| Headers {
        source: format!("{source} ({})", dir.display()),
        include_dirs: vec![dir],
    })
}

fn find_headers() -> Headers {
    if let Ok(dir) = env::var("FREESWITCH_INCLUDE_DIR") {
        return from_dir(PathBuf::from(&dir), "FREESWITCH_INCLUDE_DIR").unwrap_or_else(|| {
            panic!("FREESWITCH_INCLUDE_DIR={dir} has no switch.h; point it at FreeSWITCH's include directory")
        });
    }
    if let Ok(prefix) = env::var("FREESWITCH_PREFIX") {
        let dir = Path::new(&prefix).join("include/freeswitch");
        return from_dir(dir.clone(), "FREESWITCH_PREFIX").unwrap_or_else(|| {
            panic!(
                "FREESWITCH_PREFIX={prefix}: no switch.h in {}",
                dir.display()
            )
        });
    }
    if let Ok(out) = Command::new("pkg-config")
        .args(["--cflags-only-I", "freeswitch"])
        .output()
    {
        if out.status.success() {
            let dirs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|flag| flag.strip_prefix("-I"))
                .map(PathBuf::from)
                .collect();
            if dirs.iter().any(|d| d.join("switch.h").is_file()) {
                return Headers {
                    source: "pkg-config freeswitch".into(),
                    include_dirs: dirs,
                };
            }
        }
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut include_dirs = vec![manifest.join("include/fswtch-compat")];
    include_dirs.extend(fswtch_src::include_dirs());
    Headers {
        source: "fswtch-src 0.1.8".into(),
        include_dirs,
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    for var in [
        "FREESWITCH_INCLUDE_DIR",
        "FREESWITCH_PREFIX",
        "PKG_CONFIG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=include");
    println!("cargo:rerun-if-changed=tests/host-shim");

    let headers = find_headers();
    println!("cargo:rustc-env=NATTERBOX_FS_HEADERS={}", headers.source);

    let mut builder = bindgen::Builder::default()
        .header(manifest.join("include/natterbox_sf.h").to_string_lossy())
        .clang_args(
            headers
                .include_dirs
                .iter()
                .map(|d| format!("-I{}", d.display())),
        )
        .allowlist_var("NATTERBOX_SWITCH_API_VERSION")
        .allowlist_type("switch_loadable_module_function_table_t")
        .allowlist_type("switch_application_interface_t")
        .allowlist_type("switch_api_interface_t")
        .allowlist_type("switch_stream_handle_t")
        .allowlist_type("switch_module_interface_name_t")
        .allowlist_type("switch_log_level_t")
        .allowlist_type("switch_text_channel_t")
        .allowlist_type("switch_event_types_t")
        .allowlist_type("switch_application_flag_enum_t")
        .allowlist_type("switch_stack_t")
        .allowlist_type("switch_status_t")
        .allowlist_type("switch_session_ctl_t")
        .rustified_enum("switch_status_t")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for function in FUNCTIONS {
        builder = builder.allowlist_function(function);
    }
    builder
        .generate()
        .expect("bindgen could not read the FreeSWITCH headers (is libclang-dev installed?)")
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    build_host_shim(&manifest, &out, &headers);
}

/// Compiles tests/host-shim against the same headers, as an executable that exports the core
/// functions (`-rdynamic`) so the module's undefined symbols resolve against it.
///
/// `NATTERBOX_HOST_SHIM_SANITIZER=address|thread` (scripts/sanitize.sh) builds it instrumented,
/// linked with the sanitizer runtime of the rustc building the module rather than the C
/// compiler's: a cdylib does not carry the runtime, it calls the host's, and GCC's older runtime
/// lacks entry points that rustc's LLVM emits (`__tsan_memcpy`). `-rdynamic` exports the runtime
/// to the module as it exports the core functions.
fn build_host_shim(manifest: &Path, out: &Path, headers: &Headers) {
    let source = manifest.join("tests/host-shim/host_shim.c");
    if !source.is_file() {
        return;
    }
    println!("cargo:rerun-if-env-changed=NATTERBOX_HOST_SHIM_SANITIZER");
    let sanitizer = env::var("NATTERBOX_HOST_SHIM_SANITIZER")
        .ok()
        .filter(|s| !s.is_empty());
    let compiler = cc::Build::new().get_compiler();
    let exe = out.join("host-shim");
    let object = out.join("host-shim.o");
    let mut compile = compiler.to_command();
    compile
        .arg("-std=gnu99")
        .arg("-O1")
        .arg("-g")
        .arg("-Wall")
        .arg("-Wno-unused-parameter")
        .args(
            headers
                .include_dirs
                .iter()
                .map(|d| format!("-I{}", d.display())),
        )
        .arg("-c")
        .arg("-o")
        .arg(&object)
        .arg(&source);
    if let Some(sanitizer) = &sanitizer {
        compile
            .arg(format!("-fsanitize={sanitizer}"))
            .arg("-fno-omit-frame-pointer")
            .arg("-DSHIM_SANITIZER");
    }
    run(compile, &source);
    let mut link = compiler.to_command();
    link.arg("-rdynamic").arg("-o").arg(&exe).arg(&object);
    if let Some(sanitizer) = &sanitizer {
        // cc passes -fsanitize=address on its own under -Zsanitizer=address, which would link
        // GCC's runtime next to rustc's.
        link.arg("-fno-sanitize=all")
            .arg("-Wl,--whole-archive")
            .arg(sanitizer_runtime(sanitizer))
            .arg("-Wl,--no-whole-archive")
            .args(["-lm", "-lrt"]);
    }
    link.args(["-ldl", "-lpthread"]);
    run(link, &source);
    println!("cargo:rustc-env=NATTERBOX_HOST_SHIM={}", exe.display());
}

fn run(mut cmd: Command, source: &Path) {
    let status = cmd
        .status()
        .expect("cannot run the C compiler for the host shim");
    if !status.success() {
        panic!("compiling {} failed", source.display());
    }
}

/// `librustc-<channel>_rt.<asan|tsan>.a` in the sysroot of the rustc cargo runs.
fn sanitizer_runtime(sanitizer: &str) -> PathBuf {
    let short = match sanitizer {
        "address" => "asan",
        "thread" => "tsan",
        other => panic!("NATTERBOX_HOST_SHIM_SANITIZER={other}: expected address or thread"),
    };
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let dir = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib")
        .join(env::var("TARGET").unwrap())
        .join("lib");
    let suffix = format!("_rt.{short}.a");
    std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("librustc-") && n.ends_with(&suffix))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {short} runtime (librustc-*{suffix}) in {}: sanitizers need a nightly rustc",
                dir.display()
            )
        })
}
