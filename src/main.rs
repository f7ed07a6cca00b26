use clap::Parser;

// Large tensors are allocated and freed hundreds of times per attribution pass; glibc returns
// blocks over 32 MB to the kernel each time (page faults on every reuse), mimalloc keeps them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    neuronpath::runtime::tune();
    let cli = neuronpath::cli::Cli::parse();
    if let Err(e) = neuronpath::cli::run(cli) {
        // One line, the whole cause chain, no backtrace: errors here are the user's input.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
