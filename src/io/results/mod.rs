//! Results files: the typed schema ([`Header`], [`Record`], [`Method`], ...), the one reader and
//! writer of the files ([`read_results`], [`RecordWriter`], [`merge`]) and the validated view
//! every experiment reads ([`Results`]).
//!
//! A results file is JSON Lines: a header line (`"kind": "header"`, with a `"schema"` version)
//! describing the run, then one line per image (`"kind": "image"`, keyed by `"index"`).
mod error;
mod file;
mod fit;
mod identity;
mod merge;
pub mod os_path;
mod schema;
#[cfg(test)]
mod test_fixtures;
mod view;

pub use error::ResultsError;
pub use file::{
    read_header, read_results, read_results_noting, ReadResults, RecordWriter, Resume, Resumed,
};
pub use identity::{match_records, Candidate, Matched};
pub use merge::{merge, Merged};
pub use schema::{
    Extra, Header, ImageId, ImageResult, InputsInfo, Jas, Method, MethodResult, ModelInfo,
    NeuronName, NeuronSets, Outcome, Precision, Preprocessing, Record, RecordKey, SchemaVersion,
    TargetKind,
};
pub use view::{ImageRecord, Results};
