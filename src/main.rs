//! The `roomring` binary: parse the command line, start telemetry, run a role.

use std::process::ExitCode;

use roomring::config::{self, Command};

fn main() -> ExitCode {
    let command = match config::parse(std::env::args_os()) {
        Ok(command) => command,
        Err(usage) => {
            if usage.code == 0 {
                print!("{}", usage.message);
            } else {
                eprint!("{}", usage.message);
            }
            return ExitCode::from(usage.code as u8);
        }
    };
    roomring::telemetry::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(options) => roomring::dev::run(options).await?,
        Command::Node { .. } | Command::Gateway { .. } | Command::Ctl { .. } => {
            anyhow::bail!("this role needs the redis coordinator")
        }
    }
    Ok(())
}
