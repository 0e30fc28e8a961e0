//! Zone files (being written).
