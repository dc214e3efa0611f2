//! Zip archives (Sectigo and RapidSSL deliver a zip of `.crt`/`.cer`/`.ca-bundle` files),
//! opened in memory with limits on entries, sizes and compression ratio. Declared sizes
//! are not trusted: each entry is read through a cap one byte past its limit.

use std::io::{Cursor, Read};

use super::Limits;

pub struct ZipEntry {
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
pub struct ZipEntries {
    pub files: Vec<ZipEntry>,
    /// (place suffix, what went wrong)
    pub problems: Vec<(String, String)>,
}

/// Local file header or end-of-central-directory (an empty archive) signature.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Entries smaller than this are never judged by their compression ratio: tiny files
/// compress oddly (a few bytes of header, or a run of padding).
const RATIO_FLOOR: u64 = 64 * 1024;

/// Reads the entries of one archive. `budget` is what may still be unpacked in the whole
/// message: every byte decompressed counts against it, refused entries and nested archives
/// included, so a zip of zip bombs costs no more than one `max_zip_total_size`.
pub fn read_entries(bytes: &[u8], limits: &Limits, budget: &mut u64) -> ZipEntries {
    let mut out = ZipEntries::default();
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(archive) => archive,
        Err(e) => {
            out.problems.push((
                String::new(),
                format!("zip archive could not be opened: {e}"),
            ));
            return out;
        }
    };
    let count = archive.len();
    if count > limits.max_zip_entries {
        out.problems.push((
            String::new(),
            format!(
                "zip archive has {count} entries, over the limit of {} (max_zip_entries); not opened",
                limits.max_zip_entries
            ),
        ));
        return out;
    }
    for index in 0..count {
        let mut entry = match archive.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                out.problems.push((
                    format!(", zip entry #{}", index + 1),
                    format!("could not be read: {e}"),
                ));
                continue;
            }
        };
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("#{}", index + 1));
        let place = format!(", zip entry '{name}'");
        if entry.is_dir() {
            continue;
        }
        if entry.encrypted() {
            out.problems.push((place, "is encrypted; not read".into()));
            continue;
        }
        // Stop reading at the first limit the entry can break, so a bomb is never
        // unpacked past it: declared sizes are not trusted, the byte count is.
        let compressed = entry.compressed_size().max(1);
        let by_ratio = compressed
            .saturating_mul(limits.max_zip_ratio)
            .max(RATIO_FLOOR);
        let remaining = *budget;
        let cap = limits.max_zip_entry_size.min(remaining).min(by_ratio);
        let mut data = Vec::new();
        let read = (&mut entry)
            .take(cap.saturating_add(1))
            .read_to_end(&mut data);
        let size = data.len() as u64;
        *budget = budget.saturating_sub(size);
        if let Err(e) = read {
            out.problems
                .push((place, format!("could not be decompressed: {e}")));
            continue;
        }
        if size <= cap {
            out.files.push(ZipEntry { name, bytes: data });
            continue;
        }
        if cap == remaining && remaining < limits.max_zip_entry_size.min(by_ratio) {
            out.problems.push((
                place,
                format!(
                    "the zip archives in the message unpack to more than {} bytes (max_zip_total_size); \
                     this and later entries were not read",
                    limits.max_zip_total_size
                ),
            ));
            break;
        }
        let what = if cap == by_ratio && by_ratio < limits.max_zip_entry_size {
            format!(
                "unpacks to more than {}:1 of its compressed size of {compressed} bytes (max_zip_ratio); not read",
                limits.max_zip_ratio
            )
        } else {
            format!(
                "unpacks to more than {} bytes (max_zip_entry_size); not read",
                limits.max_zip_entry_size
            )
        };
        out.problems.push((place, what));
    }
    out
}
