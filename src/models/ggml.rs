// TEMPORARY placeholder until the converter lands.
#[derive(Debug, thiserror::Error)]
#[error("not yet")]
pub struct ConvertError;
pub struct ImportReport {
    pub n_vocab: usize,
    pub n_tensors: usize,
    pub bytes_written: u64,
    pub model_type: &'static str,
}
pub fn import_ct2(_: &std::path::Path, _: &std::path::Path) -> Result<ImportReport, ConvertError> {
    Err(ConvertError)
}
