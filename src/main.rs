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
        let mut line = e.to_string();
        for cause in e.chain().skip(1) {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}
