//! Retrieve Transaction, WADO-RS (PS3.18 10.4): instances (`retrieve`) and their metadata
//! (`metadata`) at study, series and instance level. Frames and rendered images come later.

pub mod metadata;
pub mod retrieve;
