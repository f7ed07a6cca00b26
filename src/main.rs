use clap::Parser;

mod runtime;

fn main() {
    runtime::tune();
    let cli = neuronpath::cli::Cli::parse();
    let limits = neuronpath::limits::Limits::from_env().map_err(anyhow::Error::msg);
    let result = limits.and_then(|l| {
        neuronpath::limits::set_process_limits(&l);
        neuronpath::cli::run(cli)
    });
    if let Err(e) = result {
        // One line, no backtrace: errors here are about the user's input. Causes whose text the
        // message already holds (errors that print their source) are not repeated.
        eprintln!("error: {}", neuronpath::error_line::one_line(e.as_ref()));
        std::process::exit(1);
    }
}
