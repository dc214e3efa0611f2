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

pub fn read_entries(bytes: &[u8], limits: &Limits) -> ZipEntries {
    let mut out = ZipEntries::default();
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(archive) => archive,
        Err(e) => {
            out.problems.push((String::new(), format!("zip archive could not be opened: {e}")));
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
    let mut total: u64 = 0;
    for index in 0..count {
        let mut entry = match archive.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                out.problems
                    .push((format!(", zip entry #{}", index + 1), format!("could not be read: {e}")));
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
        let cap = limits.max_zip_entry_size.min(limits.max_zip_total_size.saturating_sub(total));
        let mut data = Vec::new();
        if let Err(e) = (&mut entry).take(cap + 1).read_to_end(&mut data) {
            out.problems.push((place, format!("could not be decompressed: {e}")));
            continue;
        }
        let size = data.len() as u64;
        if size > cap {
            let what = if cap < limits.max_zip_entry_size {
                format!(
                    "the archive unpacks to more than {} bytes (max_zip_total_size); this and later entries were not read",
                    limits.max_zip_total_size
                )
            } else {
                format!(
                    "unpacks to more than {} bytes (max_zip_entry_size); not read",
                    limits.max_zip_entry_size
                )
            };
            out.problems.push((place, what));
            if cap < limits.max_zip_entry_size {
                break;
            }
            continue;
        }
        let compressed = entry.compressed_size().max(1);
        // Tiny entries compress oddly (a few bytes of header); only judge sizable ones.
        if size > 64 * 1024 && size / compressed > limits.max_zip_ratio {
            out.problems.push((
                place,
                format!(
                    "compression ratio {}:1 is over the limit of {}:1 (max_zip_ratio); not read",
                    size / compressed,
                    limits.max_zip_ratio
                ),
            ));
            continue;
        }
        total += size;
        out.files.push(ZipEntry { name, bytes: data });
    }
    out
}
