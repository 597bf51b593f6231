//! Wire layouts of the 9P2000.L messages, checked byte by byte.

use p9sync::dirent::{self, DirEntry};
use p9sync::msg::{decode_reply, decode_request, Attr, Rmsg, Tmsg};
use p9sync::wire::Qid;
use p9sync::CodecError;

fn t(m: &Tmsg, tag: u16) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(tag, &mut out).unwrap();
    out
}

fn r(m: &Rmsg, tag: u16) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(tag, &mut out).unwrap();
    out
}

#[test]
fn tversion_is_laid_out_as_size_type_notag_msize_string() {
    let b = t(&Tversion(), 0xffff);
    let mut want = vec![21, 0, 0, 0, 100, 0xff, 0xff, 0x00, 0x20, 0, 0, 8, 0];
    want.extend_from_slice(b"9P2000.L");
    assert_eq!(b, want);
}

#[allow(non_snake_case)]
fn Tversion() -> Tmsg<'static> {
    Tmsg::Version {
        msize: 8192,
        version: b"9P2000.L",
    }
}

#[test]
fn request_sizes_and_type_numbers_match_the_protocol() {
    let cases: Vec<(Tmsg, u8, usize)> = vec![
        (
            Tmsg::Attach {
                fid: 0,
                afid: !0,
                uname: b"root",
                aname: b"/x",
                n_uname: 0,
            },
            104,
            4 + 1 + 2 + 4 + 4 + 6 + 4 + 4,
        ),
        (
            Tmsg::Walk {
                fid: 1,
                newfid: 2,
                names: vec![b"ab"],
            },
            110,
            21,
        ),
        (
            Tmsg::Getattr {
                fid: 1,
                mask: 0x7ff,
            },
            24,
            19,
        ),
        (Tmsg::Lopen { fid: 1, flags: 0 }, 12, 15),
        (
            Tmsg::Readdir {
                fid: 1,
                offset: 9,
                count: 100,
            },
            40,
            23,
        ),
        (
            Tmsg::Read {
                fid: 1,
                offset: 9,
                count: 100,
            },
            116,
            23,
        ),
        (Tmsg::Readlink { fid: 1 }, 22, 11),
        (Tmsg::Clunk { fid: 1 }, 120, 11),
        (Tmsg::Flush { oldtag: 3 }, 108, 9),
    ];
    for (m, kind, len) in cases {
        let b = t(&m, 7);
        assert_eq!(b[4], kind, "{m:?}");
        assert_eq!(b.len(), len, "{m:?}");
        assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()) as usize, len);
        assert_eq!(&b[5..7], &[7, 0]);
        assert_eq!(decode_request(&b).unwrap(), (7, m));
    }
    let walk = t(
        &Tmsg::Walk {
            fid: 1,
            newfid: 2,
            names: vec![b"ab"],
        },
        1,
    );
    assert_eq!(
        walk,
        [21, 0, 0, 0, 110, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, b'a', b'b']
    );
}

#[test]
fn rlerror_carries_a_linux_errno() {
    let b = [11, 0, 0, 0, 7, 5, 0, 2, 0, 0, 0];
    assert_eq!(decode_reply(&b).unwrap(), (5, Rmsg::Lerror { ecode: 2 }));
}

#[test]
fn rgetattr_is_160_bytes_with_fields_in_stat_order() {
    let a = Attr {
        valid: 0x7ff,
        qid: Qid {
            kind: 0x80,
            version: 3,
            path: 0x1122334455667788,
        },
        mode: 0o40755,
        uid: 1,
        gid: 2,
        nlink: 3,
        rdev: 4,
        size: 5,
        blksize: 6,
        blocks: 7,
        atime: (8, 9),
        mtime: (10, 11),
        ctime: (12, 13),
        btime: (14, 15),
        gen: 16,
        data_version: 17,
    };
    let b = r(&Rmsg::Getattr(a), 1);
    assert_eq!(b.len(), 160);
    assert_eq!(b[4], 25);
    assert_eq!(b[15], 0x80, "qid type follows the 8-byte valid mask");
    assert_eq!(
        &b[28..32],
        &0o40755u32.to_le_bytes(),
        "mode after the 13-byte qid"
    );
    assert_eq!(&b[56..64], &5u64.to_le_bytes(), "size after nlink and rdev");
    assert_eq!(&b[96..104], &10u64.to_le_bytes(), "mtime_sec");
    assert_eq!(decode_reply(&b).unwrap(), (1, Rmsg::Getattr(a)));
}

#[test]
fn every_reply_round_trips() {
    let q = Qid {
        kind: 2,
        version: 1,
        path: 99,
    };
    let replies = [
        Rmsg::Version {
            msize: 8192,
            version: b"9P2000.L",
        },
        Rmsg::Attach { qid: q },
        Rmsg::Walk { qids: vec![q; 16] },
        Rmsg::Lopen {
            qid: q,
            iounit: 4096,
        },
        Rmsg::Readdir { data: b"raw" },
        Rmsg::Read { data: &[0, 1, 2] },
        Rmsg::Readlink { target: b"../x" },
        Rmsg::Clunk,
        Rmsg::Flush,
        Rmsg::Lerror { ecode: 13 },
    ];
    for m in replies {
        assert_eq!(decode_reply(&r(&m, 42)).unwrap(), (42, m));
    }
}

#[test]
fn readdir_entries_are_qid_offset_type_name() {
    let mut data = Vec::new();
    let a = DirEntry {
        qid: Qid {
            kind: 0,
            version: 0,
            path: 7,
        },
        offset: 1,
        dtype: 8,
        name: b"a.out",
    };
    let b = DirEntry {
        qid: Qid {
            kind: 0x80,
            version: 0,
            path: 8,
        },
        offset: 2,
        dtype: 4,
        name: b"dir",
    };
    dirent::encode(&mut data, &a).unwrap();
    assert_eq!(data.len(), 13 + 8 + 1 + 2 + 5);
    dirent::encode(&mut data, &b).unwrap();
    let got: Vec<_> = dirent::parse(&data).collect::<Result<_, _>>().unwrap();
    assert_eq!(got, vec![a, b]);
    let cut: Vec<_> = dirent::parse(&data[..data.len() - 1]).collect();
    assert!(
        cut[1].is_err() && cut.len() == 2,
        "a torn record is an error, once"
    );
}

#[test]
fn malformed_frames_are_errors() {
    let ok = r(&Rmsg::Clunk, 1);
    let mut long = ok.clone();
    long.push(0);
    assert!(matches!(
        decode_reply(&long),
        Err(CodecError::SizeMismatch {
            field: 7,
            actual: 8
        })
    ));
    let mut trailing = long.clone();
    trailing[0] = 8;
    assert_eq!(decode_reply(&trailing), Err(CodecError::Trailing(1)));
    assert!(matches!(
        decode_reply(&ok[..5]),
        Err(CodecError::SizeMismatch { .. })
    ));
    let mut unknown = ok.clone();
    unknown[4] = 200;
    assert_eq!(decode_reply(&unknown), Err(CodecError::UnknownType(200)));
    // An Rread whose count points past the end of the frame.
    let lie = [15, 0, 0, 0, 117, 1, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4];
    assert!(matches!(
        decode_reply(&lie),
        Err(CodecError::Truncated { .. })
    ));
    // An Rwalk claiming 17 qids.
    let walk = [9, 0, 0, 0, 111, 1, 0, 17, 0];
    assert_eq!(decode_reply(&walk), Err(CodecError::TooManyWalkNames(17)));
}

#[test]
fn requests_that_cannot_be_encoded_are_refused() {
    let names = vec![&b"x"[..]; 17];
    let mut out = Vec::new();
    let e = Tmsg::Walk {
        fid: 0,
        newfid: 1,
        names,
    }
    .encode(1, &mut out);
    assert_eq!(e, Err(CodecError::TooManyWalkNames(17)));
    let huge = vec![b'a'; 70_000];
    let e = Tmsg::Attach {
        fid: 0,
        afid: 0,
        uname: &huge,
        aname: b"",
        n_uname: 0,
    }
    .encode(1, &mut out);
    assert_eq!(e, Err(CodecError::StringTooLong(70_000)));
}
