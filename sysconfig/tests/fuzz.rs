//! The metadata parsers take whatever a cloud hands them: none of them may panic.

use std::io::Cursor;

use proptest::prelude::*;
use sysconfig::sources::volume::Volume;
use sysconfig::sources::{cloudconfig, configdrive, netconfig, nocloud};

fn yamlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "#cloud-config\n",
        "- ",
        "  ",
        "    ",
        ": ",
        ":",
        "\n",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        "\"",
        "|",
        ">-",
        "#",
        "users",
        "name",
        "hostname",
        "write_files",
        "version",
        "1",
        "2",
        "config",
        "ethernets",
        "\\",
        "&a",
        "*a",
        "ssh_authorized_keys",
        "path",
        "content",
        "type",
        "subnets",
        "static",
        "address",
        "\t",
        "~",
        "é",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn yaml_and_cloud_config_never_panic(s in yamlish()) {
        let _ = sysconfig::yaml::parse(&s);
        let _ = cloudconfig::parse("fuzz", format!("#cloud-config\n{s}").as_bytes());
        let _ = netconfig::parse("fuzz", &s);
        for path in ["ethernets.id0.addresses", "config[1].subnets[0].address", "a[9]", "[0]", ""] {
            let _ = netconfig::locate(&s, path, true);
            let _ = netconfig::locate(&s, path, false);
        }
        let _ = nocloud::parse(&nocloud::Seed { meta_data: Some(s.clone()), user_data: Some(s.clone().into_bytes()), network_config: Some(s) });
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        let _ = sysconfig::yaml::parse(&s);
        let _ = configdrive::parse(&s, Some(s.as_bytes()), Some(&s));
        let _ = sysconfig::tomljson::parse(&s);
    }

    #[test]
    fn arbitrary_volume_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..40_000), fat in any::<bool>()) {
        // Make the probes pass often, so the parsers behind them get exercised.
        if bytes.len() > 34_000 {
            if fat {
                bytes[510] = 0x55;
                bytes[511] = 0xAA;
                bytes[11] = 0;
                bytes[12] = 2;
                bytes[13] = 1;
            } else {
                bytes[32768..32774].copy_from_slice(b"\x01CD001");
            }
        }
        if let Ok(Some(mut v)) = Volume::open(Cursor::new(bytes)) {
            let _ = v.label();
            let _ = v.read("meta-data");
            let _ = v.read("openstack/latest/meta_data.json");
        }
    }
}
