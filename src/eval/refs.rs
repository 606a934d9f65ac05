//! References from a file of their own (`neko eval --ref FILE`), as jiwer and sacrebleu take
//! them: one reference per line, line k for the k-th record of every scored file.

use std::path::Path;

use super::Input;

/// The references of `path`, one per line (a blank line is an empty reference; a last line
/// break ends the last one rather than starting another). Read as text whatever it looks
/// like: a reference that happens to be `null` or `"quoted"` is that text. A byte-order mark
/// is [`crate::record::read_text`]'s to skip.
pub fn read(path: &Path) -> std::io::Result<Vec<String>> {
    let text = crate::record::read_text(path)?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Gives every record of every input its reference from `refs`, by position. A file whose
/// record count differs from the references' line count is an error (pairing them anyway
/// would score every record after the first gap against another record's reference).
/// Returns how many records had a reference of their own that `refs` replaced with another.
pub fn apply(inputs: &mut [Input], refs: &[String], refs_name: &str) -> Result<usize, String> {
    if let Some(input) = inputs.iter().find(|i| i.entries.len() != refs.len()) {
        return Err(format!(
            "{} has {} records and --ref {refs_name} {} lines: they are paired by position",
            input.path,
            input.entries.len(),
            refs.len()
        ));
    }
    let mut replaced = 0;
    for input in inputs.iter_mut() {
        for (entry, reference) in input.entries.iter_mut().zip(refs) {
            if let Ok(record) = &mut entry.record {
                let own = record.reference.replace(reference.clone());
                replaced += usize::from(own.is_some_and(|own| own != *reference));
            }
        }
    }
    Ok(replaced)
}
