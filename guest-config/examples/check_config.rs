//! What `vminit --check-config FILE` prints, without building the init:
//! `cargo run -p guest-config --example check_config -- FILE...`

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        match guest_config::check_config_file(Path::new(&arg)) {
            Ok(summary) => println!("{summary}"),
            Err(errors) => {
                failed = true;
                for e in errors {
                    println!("{e}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
