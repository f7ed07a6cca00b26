use clap::Parser;
// The commands are written against the library's modules as `crate::model`, `crate::io`, ...:
// this import makes those paths resolve here, where `cli` lives (it is the binary's, not part of
// the library's API).
use neuronpath::*;

mod cli;
mod runtime;

fn main() {
    runtime::tune();
    let args = cli::Cli::parse();
    let limits = neuronpath::limits::Limits::from_env().map_err(anyhow::Error::msg);
    let result = limits.and_then(|l| {
        neuronpath::limits::set_process_limits(&l);
        cli::run(args)
    });
    if let Err(e) = result {
        // One line, no backtrace: errors here are about the user's input. Causes whose text the
        // message already holds (errors that print their source) are not repeated.
        eprintln!("error: {}", neuronpath::error_line::one_line(e.as_ref()));
        std::process::exit(1);
    }
}
