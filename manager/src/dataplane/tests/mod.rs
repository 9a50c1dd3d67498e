mod bench;
mod support;
