//! Presentation for lanesctl: aligned tables and JSON views of API messages,
//! kept here (pure) so they are tested without a daemon.

pub mod json;
pub mod table;
