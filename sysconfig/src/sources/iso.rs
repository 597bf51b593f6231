//! A read-only ISO9660 reader. Names come from Joliet when the image has a Joliet tree,
//! else from Rock Ridge `NM` entries, else from the plain ISO names (`META_DAT.;1`
//! becomes `meta_dat.`), which is why tests build images with `-J -R` as cloud tools do.

use super::volume::{read_at, ReadSeek, VolumeError};

const SECTOR: u64 = 2048;
const MAX_READ: u64 = 64 << 20;

pub struct Iso<R> {
    r: R,
    label: String,
    root: (u64, u64),
    joliet: bool,
}

fn corrupt(m: impl Into<String>) -> VolumeError {
    VolumeError::Corrupt {
        kind: "ISO9660",
        message: m.into(),
    }
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

struct Rec {
    name: String,
    extent: u64,
    size: u64,
    is_dir: bool,
}

impl<R: ReadSeek> Iso<R> {
    pub fn probe(r: &mut R) -> Result<bool, VolumeError> {
        Ok(read_at(r, 16 * SECTOR, 6).is_ok_and(|b| &b[1..6] == b"CD001"))
    }

    pub fn open(mut r: R) -> Result<Self, VolumeError> {
        let mut primary = None;
        let mut joliet = None;
        for i in 16..64u64 {
            let d = read_at(&mut r, i * SECTOR, SECTOR as usize)?;
            if &d[1..6] != b"CD001" {
                return Err(corrupt(format!("sector {i} is not a volume descriptor")));
            }
            match d[0] {
                1 => primary = Some(d),
                2 if d[88] == b'%' && d[89] == b'/' && matches!(d[90], b'@' | b'C' | b'E') => {
                    joliet = Some(d)
                }
                255 => break,
                _ => {}
            }
        }
        let p = primary.ok_or_else(|| corrupt("no primary volume descriptor"))?;
        let label = String::from_utf8_lossy(&p[40..72]).trim_end().to_string();
        let (d, is_joliet) = match joliet {
            Some(j) => (j, true),
            None => (p, false),
        };
        let root = (le32(&d, 156 + 2), le32(&d, 156 + 10));
        Ok(Iso {
            r,
            label,
            root,
            joliet: is_joliet,
        })
    }

    pub fn label(&self) -> String {
        self.label.clone()
    }

    fn records(&mut self, extent: u64, size: u64) -> Result<Vec<Rec>, VolumeError> {
        if size > MAX_READ {
            return Err(corrupt("directory larger than the limit"));
        }
        let data = read_at(&mut self.r, extent * SECTOR, size as usize)?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let len = usize::from(data[off]);
            if len == 0 {
                // Records never cross a sector boundary; zero padding fills the rest.
                off = (off / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if len < 34 || off + len > data.len() {
                return Err(corrupt("directory record runs past its directory"));
            }
            let rec = &data[off..off + len];
            let name_len = usize::from(rec[32]);
            if 33 + name_len > len {
                return Err(corrupt("name runs past its directory record"));
            }
            let raw_name = &rec[33..33 + name_len];
            if !(name_len == 1 && (raw_name[0] == 0 || raw_name[0] == 1)) {
                let name = if self.joliet {
                    let units: Vec<u16> = raw_name
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    char::decode_utf16(units)
                        .map(|c| c.unwrap_or('?'))
                        .collect::<String>()
                } else {
                    let su_start = 33 + name_len + (1 - name_len % 2);
                    rock_ridge_name(rec.get(su_start..).unwrap_or(&[]))
                        .unwrap_or_else(|| String::from_utf8_lossy(raw_name).to_lowercase())
                };
                out.push(Rec {
                    name: strip_version(&name),
                    extent: le32(rec, 2),
                    size: le32(rec, 10),
                    is_dir: rec[25] & 0x02 != 0,
                });
            }
            off += len;
        }
        Ok(out)
    }

    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (mut extent, mut size) = self.root;
        for (i, part) in parts.iter().enumerate() {
            let recs = self.records(extent, size)?;
            let Some(rec) = recs.into_iter().find(|r| r.name.eq_ignore_ascii_case(part)) else {
                return Ok(None);
            };
            if i + 1 == parts.len() {
                if rec.is_dir {
                    return Ok(None);
                }
                if rec.size > MAX_READ {
                    return Err(corrupt(format!("{path} is larger than {MAX_READ} bytes")));
                }
                return Ok(Some(read_at(
                    &mut self.r,
                    rec.extent * SECTOR,
                    rec.size as usize,
                )?));
            }
            if !rec.is_dir {
                return Ok(None);
            }
            extent = rec.extent;
            size = rec.size;
        }
        Ok(None)
    }
}

fn strip_version(name: &str) -> String {
    let n = name.split(';').next().unwrap_or(name);
    n.strip_suffix('.').unwrap_or(n).to_string()
}

/// The Rock Ridge alternate name from a System Use area, if any.
fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = String::new();
    while su.len() >= 4 {
        let len = usize::from(su[2]);
        if len < 4 || len > su.len() {
            break;
        }
        if &su[0..2] == b"NM" && len >= 5 {
            name.push_str(&String::from_utf8_lossy(&su[5..len]));
        }
        su = &su[len..];
    }
    (!name.is_empty()).then_some(name)
}
