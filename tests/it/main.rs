//! Every integration test, in one binary (one link instead of one per file). Each module is
//! a subject; `helpers` starts the service and the binary the way Terra and a person would.

mod helpers;
mod model_support;

mod backfill;
mod batch;
mod cli;
mod deliveries;
mod end_of_day;
mod erasure;
mod header_limit;
mod hostile;
mod ingest;
mod ledger_references;
mod lifecycle;
mod model_corpus;
mod model_coverage;
mod model_decoding;
mod model_examples;
mod model_fuzz;
mod operations;
mod pipeline;
mod reconcile;
mod retention;
mod scripts;
mod send;
mod store;
