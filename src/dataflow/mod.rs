//! The streaming runtime: operators on Arrow batches, connected by bounded
//! channels, one job per view (DESIGN §2).
//!
//! A view's plan is a tree of nodes (`plan.rs`): scans, joins,
//! aggregations, top-Ns and unions. The job (`job.rs`) runs each node as a
//! stage of P instances; a stage's rows go into the view, or on to the stage
//! above: exchanged by key, partially aggregated, or forwarded (a union).
//!
//! ```text
//! reader (thread) ─ prepare ─► pipeline (task) ─ watermark ─ window assign ─ filter/project/lookup join
//!     ├─ without aggregation: materialize (append) ─► view
//!     ├─ partial aggregate ─► exchange by group hash ─► window aggregate (task) ─┬─ materialize ─► view
//!     │                                                                          └─► the stage above
//!     ├─ a side of a join of two streams ─► exchange by key hash ─► stream join (task) ─┬─ materialize ─► view
//!     │                                                                                 └─► the stage above
//!     └─ an input of a union ─► forward ─► merge (task) ─┬─ materialize ─► view
//!                                                        └─► the stage above
//! ```
//!
//! Checkpoint barriers flow along the same channels as rows
//! (`checkpoint.rs`), so every epoch is a consistent cut of the job.
//!
//! Every operator's doc states its input, output, state, watermarks and
//! checkpoint. Window math and watermark bookkeeping are pure (`window.rs`,
//! `watermark.rs`); operators are thin around them.

pub mod checkpoint;
pub mod job;
pub mod keyed_rows;
pub mod lookup_join;
pub mod materialize;
pub mod merge;
pub mod message;
pub mod owner;
pub mod partial_aggregate;
pub mod physical;
pub mod pipeline;
pub mod plan;
pub mod prepare;
pub mod retract;
pub mod session;
pub mod stream_join;
pub mod top_n;
pub mod watermark;
pub mod window;
pub mod window_aggregate;
