//! A read-only FAT12/16/32 reader: boot sector, FAT chains, directories with long names.

use super::volume::{read_at, ReadSeek, VolumeError};

pub struct Fat<R> {
    r: R,
    bytes_per_sector: u64,
    cluster_bytes: u64,
    fat_offset: u64,
    fat_bits: u32,
    root_offset: u64,
    root_entries: u64,
    root_cluster: u32,
    data_offset: u64,
    clusters: u32,
    label: String,
}

struct Entry {
    name: String,
    short: String,
    is_dir: bool,
    cluster: u32,
    size: u32,
}

fn corrupt(m: impl Into<String>) -> VolumeError {
    VolumeError::Corrupt {
        kind: "FAT",
        message: m.into(),
    }
}

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}
fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

/// Upper bound on bytes read for one file or directory: metadata is small, and a corrupt
/// chain must not make us allocate without limit.
const MAX_READ: u64 = 64 << 20;

impl<R: ReadSeek> Fat<R> {
    pub fn probe(r: &mut R) -> Result<bool, VolumeError> {
        let Ok(b) = read_at(r, 0, 512) else {
            return Ok(false);
        };
        let bps = le16(&b, 11);
        Ok(b[510] == 0x55
            && b[511] == 0xAA
            && matches!(bps, 512 | 1024 | 2048 | 4096)
            && b[13].is_power_of_two()
            && b[16] > 0)
    }

    pub fn open(mut r: R) -> Result<Self, VolumeError> {
        let b = read_at(&mut r, 0, 512)?;
        let bps = le16(&b, 11);
        let spc = u64::from(b[13]);
        let reserved = le16(&b, 14);
        let nfats = u64::from(b[16]);
        let root_entries = le16(&b, 17);
        let total16 = le16(&b, 19);
        let fat16 = le16(&b, 22);
        let total32 = le32(&b, 32);
        if bps == 0 || spc == 0 || reserved == 0 {
            return Err(corrupt("zero geometry in the boot sector"));
        }
        let fat_sectors = if fat16 != 0 { fat16 } else { le32(&b, 36) };
        let total = if total16 != 0 { total16 } else { total32 };
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let data_start = reserved + nfats * fat_sectors + root_sectors;
        if total <= data_start {
            return Err(corrupt("no data area"));
        }
        let clusters = (total - data_start) / spc;
        let fat_bits = if clusters < 4085 {
            12
        } else if clusters < 65525 {
            16
        } else {
            32
        };
        let label_off = if fat_bits == 32 { 71 } else { 43 };
        let mut fat = Fat {
            r,
            bytes_per_sector: bps,
            cluster_bytes: bps * spc,
            fat_offset: reserved * bps,
            fat_bits,
            root_offset: (reserved + nfats * fat_sectors) * bps,
            root_entries,
            root_cluster: if fat_bits == 32 {
                le32(&b, 44) as u32
            } else {
                0
            },
            data_offset: data_start * bps,
            clusters: u32::try_from(clusters).unwrap_or(u32::MAX),
            label: String::from_utf8_lossy(&b[label_off..label_off + 11])
                .trim_end()
                .to_string(),
        };
        // The volume label entry in the root directory wins over the boot sector copy,
        // which some tools leave as "NO NAME".
        if let Ok(raw) = fat.root_raw() {
            for e in raw.chunks_exact(32) {
                if e[0] == 0 {
                    break;
                }
                if e[0] != 0xE5 && e[11] & 0x08 != 0 && e[11] & 0x0F != 0x0F {
                    fat.label = String::from_utf8_lossy(&e[..11]).trim_end().to_string();
                    break;
                }
            }
        }
        Ok(fat)
    }

    pub fn label(&self) -> String {
        self.label.clone()
    }

    fn next(&mut self, c: u32) -> Result<u32, VolumeError> {
        let c64 = u64::from(c);
        let v = match self.fat_bits {
            12 => {
                let off = self.fat_offset + c64 + c64 / 2;
                let b = read_at(&mut self.r, off, 2)?;
                let w = u32::from(u16::from_le_bytes([b[0], b[1]]));
                if c & 1 == 0 {
                    w & 0xFFF
                } else {
                    w >> 4
                }
            }
            16 => {
                let b = read_at(&mut self.r, self.fat_offset + c64 * 2, 2)?;
                u32::from(u16::from_le_bytes([b[0], b[1]]))
            }
            _ => {
                let b = read_at(&mut self.r, self.fat_offset + c64 * 4, 4)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x0FFF_FFFF
            }
        };
        Ok(v)
    }

    fn chain(&mut self, first: u32, limit: u64) -> Result<Vec<u8>, VolumeError> {
        let mut out = Vec::new();
        let mut c = first;
        let end = match self.fat_bits {
            12 => 0xFF8,
            16 => 0xFFF8,
            _ => 0x0FFF_FFF8,
        };
        let mut steps = 0u64;
        while c >= 2 && c < end {
            if c > self.clusters + 1 {
                return Err(corrupt(format!("cluster {c} is beyond the volume")));
            }
            steps += 1;
            if steps * self.cluster_bytes > limit.max(self.cluster_bytes) + self.cluster_bytes {
                return Err(corrupt("cluster chain longer than the file (a loop?)"));
            }
            let off = self.data_offset + u64::from(c - 2) * self.cluster_bytes;
            out.extend(read_at(&mut self.r, off, self.cluster_bytes as usize)?);
            c = self.next(c)?;
        }
        Ok(out)
    }

    fn root_raw(&mut self) -> Result<Vec<u8>, VolumeError> {
        if self.fat_bits == 32 {
            self.chain(self.root_cluster, MAX_READ)
        } else {
            let len = (self.root_entries * 32).min(MAX_READ) as usize;
            let _ = self.bytes_per_sector;
            Ok(read_at(&mut self.r, self.root_offset, len)?)
        }
    }

    fn entries(raw: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut lfn: Vec<(u8, String)> = Vec::new();
        for e in raw.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            if e[0] == 0xE5 {
                lfn.clear();
                continue;
            }
            let attr = e[11];
            if attr & 0x0F == 0x0F {
                let mut units = Vec::new();
                for range in [(1usize, 11usize), (14, 26), (28, 32)] {
                    for p in (range.0..range.1).step_by(2) {
                        units.push(u16::from_le_bytes([e[p], e[p + 1]]));
                    }
                }
                let s: String =
                    char::decode_utf16(units.into_iter().take_while(|u| *u != 0 && *u != 0xFFFF))
                        .map(|c| c.unwrap_or('?'))
                        .collect();
                lfn.push((e[0] & 0x1F, s));
                continue;
            }
            if attr & 0x08 != 0 {
                lfn.clear();
                continue;
            }
            let base = String::from_utf8_lossy(&e[0..8]).trim_end().to_string();
            let ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
            let short = if ext.is_empty() {
                base
            } else {
                format!("{base}.{ext}")
            };
            let name = if lfn.is_empty() {
                short.clone()
            } else {
                lfn.sort_by_key(|(n, _)| *n);
                lfn.iter().map(|(_, s)| s.as_str()).collect()
            };
            lfn.clear();
            let hi = if u16::from_le_bytes([e[20], e[21]]) != 0 {
                u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
            } else {
                0
            };
            out.push(Entry {
                name,
                short,
                is_dir: attr & 0x10 != 0,
                cluster: hi | u32::from(u16::from_le_bytes([e[26], e[27]])),
                size: u32::from_le_bytes([e[28], e[29], e[30], e[31]]),
            });
        }
        out
    }

    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, VolumeError> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut raw = self.root_raw()?;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let found = Self::entries(&raw)
                .into_iter()
                .find(|e| e.name.eq_ignore_ascii_case(part) || e.short.eq_ignore_ascii_case(part));
            let Some(e) = found else { return Ok(None) };
            if last {
                if e.is_dir {
                    return Ok(None);
                }
                let size = u64::from(e.size);
                if size > MAX_READ {
                    return Err(corrupt(format!("{path} is larger than {MAX_READ} bytes")));
                }
                if size == 0 {
                    return Ok(Some(Vec::new()));
                }
                let mut data = self.chain(e.cluster, size)?;
                if (data.len() as u64) < size {
                    return Err(corrupt(format!(
                        "{path} is shorter than its directory entry"
                    )));
                }
                data.truncate(size as usize);
                return Ok(Some(data));
            }
            if !e.is_dir {
                return Ok(None);
            }
            raw = self.chain(e.cluster, MAX_READ)?;
        }
        Ok(None)
    }
}
