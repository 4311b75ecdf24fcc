//! `aftercare bench ingest` (filled in below).
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {}
pub async fn ingest(
    _c: &crate::config::Config,
    _a: &IngestBenchArgs,
) -> Result<(), std::io::Error> {
    Ok(())
}
