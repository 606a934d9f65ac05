//! neko's integration tests: one binary, one module per area, shared helpers in `util`.

mod base;
mod bench;
mod correct;
mod eval;
mod margin;
mod metrics;
mod model;
mod model_files;
mod record_props;
mod robust;
mod serve;
mod shard;
mod speed;
mod stream;
mod style;
mod train;
mod util;
