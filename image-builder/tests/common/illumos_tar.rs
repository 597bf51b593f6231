//! illumos tar's archive format, written and read here from the facts of illumos-gate
//! `usr/src/cmd/tar/tar.c` (illumos tar cannot run on this host): a writer for test inputs
//! shaped as `tar cEf` writes them, and a reader that accepts and interprets an archive as
//! `tar xeEp@/f` (the Helios installer's command) does.

use std::collections::BTreeMap;

const NAMSIZ: usize = 100;
const PRESIZ: usize = 155;
const PATH_MAX: usize = 1024;

/// One header block as `tomodes` and `build_dblock` fill it: `%07lo` mode, uid and gid,
/// `%011o` size and mtime, magic `ustar` + NUL, version `00`, owner names, `%07lo` device
/// numbers, `strncpy`'d name, link name and prefix, `%07o` checksum.
#[derive(Clone)]
pub struct Block {
    pub name: Vec<u8>,
    pub prefix: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub linkname: Vec<u8>,
}

impl Block {
    pub fn new(name: &str, typeflag: u8) -> Block {
        Block {
            name: name.as_bytes().to_vec(),
            prefix: Vec::new(),
            typeflag,
            mode: 0o644,
            uid: 0,
            gid: 3,
            size: 0,
            mtime: 1_600_000_000,
            linkname: Vec::new(),
        }
    }

    pub fn bytes(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, v: &[u8], max: usize| {
            let n = v.len().min(max);
            h[at..at + n].copy_from_slice(&v[..n]);
        };
        put(&mut h, 0, &self.name, NAMSIZ);
        put(&mut h, 100, format!("{:07o}\0", self.mode).as_bytes(), 8);
        put(&mut h, 108, format!("{:07o}\0", self.uid).as_bytes(), 8);
        put(&mut h, 116, format!("{:07o}\0", self.gid).as_bytes(), 8);
        put(&mut h, 124, format!("{:011o}\0", self.size).as_bytes(), 12);
        put(&mut h, 136, format!("{:011o}\0", self.mtime).as_bytes(), 12);
        h[156] = self.typeflag;
        put(&mut h, 157, &self.linkname, NAMSIZ);
        put(&mut h, 257, b"ustar\0", 6);
        put(&mut h, 263, b"00", 2);
        put(&mut h, 265, b"root", 32);
        put(&mut h, 297, b"sys", 32);
        put(&mut h, 329, b"0000000\0", 8);
        put(&mut h, 337, b"0000000\0", 8);
        put(&mut h, 345, &self.prefix, PRESIZ);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        put(&mut h, 148, format!("{sum:07o}\0").as_bytes(), 8);
        h
    }
}

/// A header block and its data, padded to whole blocks.
pub fn member(b: &Block, data: &[u8]) -> Vec<u8> {
    let mut out = b.bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The `X` header `build_dblock` writes before `entry` with the `E` modifier: a copy of the
/// entry's header named by its last component in `/tmp/PaxHeaders.<pid>`, with the records
/// `gen_date` (always `mtime`, `%ld.%9.9ld`), `gen_num` and `gen_string` make.
pub fn x_header(entry: &Block, nsec: u32, records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = rec("mtime", format!("{}.{nsec:09}", entry.mtime).as_bytes());
    for (k, v) in records {
        data.extend(rec(k, v));
    }
    let last = entry
        .name
        .rsplit(|b| *b == b'/')
        .next()
        .unwrap_or(&[])
        .to_vec();
    let x = Block {
        name: last,
        prefix: b"/tmp/PaxHeaders.1234".to_vec(),
        typeflag: b'X',
        size: data.len() as u64,
        linkname: Vec::new(),
        ..entry.clone()
    };
    member(&x, &data)
}

/// `"%d %s=%s\n"`, the length counting the whole record.
pub fn rec(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Ends an archive with the two zero blocks `putempty(2)` writes.
pub fn finish(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// One entry as illumos tar would extract it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub typeflag: u8,
    pub size: u64,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
}

/// The `keylist_pair` table of `get_xdata`: other keywords are "unrecognized ... Ignored".
const KEYWORDS: &[&str] = &[
    "SUN.devmajor",
    "SUN.devminor",
    "gid",
    "gname",
    "linkpath",
    "path",
    "size",
    "uid",
    "uname",
    "mtime",
];

/// Reads `archive` as `tar xeEp@/f` does, by name (`check_prefix`: the `X` path, else
/// `prefix/name`), or fails with what illumos tar would print and stop at. With `e`
/// (`errflag`) any unrecognized typeflag with data stops the run (`convtoreg`, `doxtract`),
/// a bad checksum stops it (`getdir`), and so does a bad extended record (`get_xdata`).
pub fn read(archive: &[u8]) -> Result<BTreeMap<Vec<u8>, Read>, String> {
    let mut out = BTreeMap::new();
    let mut at = 0;
    let block = |at: usize| -> Result<&[u8], String> {
        archive
            .get(at..at + 512)
            .ok_or_else(|| "tar: tape read error".to_string())
    };
    loop {
        let mut h = block(at)?;
        at += 512;
        if h[0] == 0 {
            // endtape: a header whose name starts with NUL ends the archive.
            return Ok(out);
        }
        check(h)?;
        let mut xpath = None;
        let mut xlink = None;
        let mut xsize = None;
        let mut xuid = None;
        let mut xgid = None;
        let mut xmtime = None;
        // getdir sets Xhdrflag for 'X' and 'L' only; get_xdata then reads the records and
        // the next header.
        if h[156] == b'X' || h[156] == b'L' {
            let size = octal(&h[124..136])? as usize;
            let data = archive
                .get(at..at + size)
                .ok_or("tar: tape read error")?
                .to_vec();
            at += size.div_ceil(512) * 512;
            if h[156] == b'L' {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                xpath = Some(data[..end].to_vec());
            } else {
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let sp = rest.iter().position(|b| *b == b' ').ok_or("bad record")?;
                    let len: usize = std::str::from_utf8(&rest[..sp])
                        .map_err(|e| e.to_string())?
                        .parse()
                        .map_err(|e| format!("record length: {e}"))?;
                    let r = &rest[sp + 1..len - 1];
                    let eq = r.iter().position(|b| *b == b'=').ok_or("no =")?;
                    let (key, value) = (std::str::from_utf8(&r[..eq]).unwrap(), &r[eq + 1..]);
                    if !KEYWORDS.contains(&key) {
                        return Err(format!(
                            "tar:  unrecognized extended header keyword '{key}'.  Ignored."
                        ));
                    }
                    let num = || std::str::from_utf8(value).unwrap().to_string();
                    match key {
                        // utf8_local: longer than PATH_MAX is "Extended header ... too long".
                        "path" | "linkpath" if value.len() > PATH_MAX => {
                            return Err(format!("tar: Extended header {key} too long."))
                        }
                        "path" => xpath = Some(value.to_vec()),
                        "linkpath" => xlink = Some(value.to_vec()),
                        "size" => xsize = Some(num().parse::<u64>().map_err(|e| e.to_string())?),
                        "uid" => xuid = Some(num().parse::<u64>().map_err(|e| e.to_string())?),
                        "gid" => xgid = Some(num().parse::<u64>().map_err(|e| e.to_string())?),
                        "mtime" => {
                            let s = num();
                            let secs = s.split('.').next().unwrap().parse::<i64>();
                            xmtime = Some(secs.map_err(|e| e.to_string())?);
                        }
                        _ => {}
                    }
                    rest = &rest[len..];
                }
            }
            h = block(at)?;
            at += 512;
            check(h)?;
        }
        let typeflag = h[156];
        let size = match xsize {
            Some(s) => s,
            None => octal(&h[124..136])?,
        };
        if !b"0\x0012345".iter().chain(b"6AEL").any(|t| *t == typeflag) && size > 0 {
            return Err(format!(
                "tar: typeflag '{}' not recognized",
                typeflag as char
            ));
        }
        let name = match xpath {
            Some(p) => p,
            None => {
                let field =
                    |f: &[u8]| f[..f.iter().position(|b| *b == 0).unwrap_or(f.len())].to_vec();
                let (prefix, name) = (field(&h[345..500]), field(&h[..100]));
                if prefix.is_empty() {
                    name
                } else {
                    [prefix, b"/".to_vec(), name].concat()
                }
            }
        };
        let link = xlink.unwrap_or_else(|| {
            let f = &h[157..257];
            f[..f.iter().position(|b| *b == 0).unwrap_or(f.len())].to_vec()
        });
        // passtape: links, symlinks, devices, directories and FIFOs have no data blocks
        // whatever the size field says.
        let blocks = if b"123456".contains(&typeflag) {
            0
        } else {
            size.div_ceil(512) as usize
        };
        let data = archive
            .get(at..at + size as usize)
            .filter(|_| blocks > 0)
            .map(|d| d.to_vec())
            .unwrap_or_default();
        at += blocks * 512;
        out.insert(
            name,
            Read {
                typeflag,
                size,
                uid: xuid.map_or_else(|| octal(&h[108..116]), Ok)?,
                gid: xgid.map_or_else(|| octal(&h[116..124]), Ok)?,
                mtime: xmtime.map_or_else(|| octal(&h[136..148]).map(|v| v as i64), Ok)?,
                link,
                data,
            },
        );
    }
}

fn check(h: &[u8]) -> Result<(), String> {
    let want: u32 = h[..148]
        .iter()
        .chain(&h[156..])
        .map(|b| u32::from(*b))
        .sum::<u32>()
        + 256;
    if octal(&h[148..156])? as u32 != want {
        return Err("tar: directory checksum error".to_string());
    }
    Ok(())
}

/// `sscanf("%12lo")`: leading blanks, then octal digits up to the first other byte.
fn octal(field: &[u8]) -> Result<u64, String> {
    let s: Vec<u8> = field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(b))
        .copied()
        .collect();
    if s.is_empty() {
        return Err(format!("not an octal field: {field:?}"));
    }
    u64::from_str_radix(std::str::from_utf8(&s).unwrap(), 8).map_err(|e| e.to_string())
}
