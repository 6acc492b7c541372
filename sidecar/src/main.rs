//! natterbox-sidecar: arguments, logging, then `natterbox_sidecar::run`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = "/etc/freeswitch/autoload_configs/natterbox_sf.conf.xml";

const USAGE: &str = "usage: natterbox-sidecar [--config PATH] [--check-config]

  --config PATH    natterbox_sf.conf.xml (default /etc/freeswitch/autoload_configs/natterbox_sf.conf.xml)
  --check-config   validate the config, its secrets and files, explain problems, exit 0 or 1
  --log-format F   text (default) or json: one JSON object per line (also NATTERBOX_LOG_FORMAT)
  --version        print the version

Logging: RUST_LOG (e.g. info, natterbox_sidecar=debug); signals: SIGTERM drains, SIGHUP reloads.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // journald adds its own timestamps and shows no colours: under systemd (JOURNAL_STREAM set)
    // log without time, and never with ANSI escapes unless stderr is a terminal.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if format == LogFormat::Json {
        // For log shippers: one object per line with timestamp, level, message and fields.
        let json = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr);
        tracing_subscriber::registry()
            .with(json)
            .with(filter)
            .init();
        return;
    }
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    if under_journal {
        tracing_subscriber::registry()
            .with(fmt.without_time())
            .with(filter)
            .init();
    } else {
        tracing_subscriber::registry().with(fmt).with(filter).init();
    }
}

fn main() -> ExitCode {
    let mut config_path = PathBuf::from(DEFAULT_CONFIG);
    let mut check = false;
    let from_env = std::env::var("NATTERBOX_LOG_FORMAT").ok();
    let mut log_format = match from_env.as_deref().map(LogFormat::parse) {
        None => LogFormat::Text,
        Some(Some(format)) => format,
        Some(None) => {
            eprintln!("NATTERBOX_LOG_FORMAT must be text or json\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = PathBuf::from(p),
                None => {
                    eprintln!("--config needs a path\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--check-config" => check = true,
            "--log-format" => match args.next().as_deref().and_then(LogFormat::parse) {
                Some(format) => log_format = format,
                None => {
                    eprintln!("--log-format needs text or json\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--version" | "-V" => {
                println!("natterbox-sidecar {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    if check {
        let report = natterbox_sidecar::check::check_file(&config_path);
        print!("{}", report.render());
        return if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    init_logging(log_format);
    let config = match natterbox_sidecar::load_config(&config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start: invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.settings.runtime_threads.max(2))
        .enable_all()
        .thread_name("sidecar")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(natterbox_sidecar::run(
        config_path,
        config,
        std::future::pending(),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}
