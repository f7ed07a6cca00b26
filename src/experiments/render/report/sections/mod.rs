//! The report's sections, one file each.
use super::SectionFn;

mod atlas;
mod claims;
mod dataset;
mod errors;
mod howto;
mod images;
mod jas;
mod manipulation;
mod pruning;
mod summary;

/// The sections in page order.
pub const SECTIONS: &[SectionFn] = &[
    summary::section,
    howto::section,
    claims::section,
    jas::section,
    manipulation::section,
    atlas::section,
    dataset::section,
    pruning::section,
    images::section,
    errors::section,
];
