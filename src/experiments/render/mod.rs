//! Rendering of the experiments: SVG primitives ([`svg`]), plot types ([`plots`]), the
//! experiments' figures ([`figures`]), one explained image's picture ([`explain_figure`]), HTML blocks ([`html`]), input thumbnails ([`thumbs`]) and
//! the report ([`report`]). Nothing here computes an experiment; it draws what `experiments`
//! computed.
pub mod detail;
pub mod diverging;
pub mod explain_figure;
pub mod figures;
pub mod html;
pub mod plots;
pub mod report;
pub mod svg;
pub mod thumbs;
