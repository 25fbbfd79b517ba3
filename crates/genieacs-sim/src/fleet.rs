//! The seeded starting state: devices of a few real-world models with TR-098
//! (`InternetGatewayDevice.`) or TR-181 (`Device.`) parameter trees, tags, last-inform times,
//! a few queued and faulted tasks, firmware files, and default presets and provisions.
//!
//! Behaviour is assigned by position so tests can rely on it whatever the seed: device index
//! `i % 10 == 3` is offline, `i % 10 == 7` faults every task; all others are online.
//! Device 0 is always `00236A-SmartRG585-SMRT00236a42`, the id every GenieACS example uses.

use serde_json::{Map, Value, json};

use crate::acs::{Acs, Behaviour};
use crate::util::iso8601;

struct Model {
    oui: &'static str,
    manufacturer: &'static str,
    product_class: &'static str,
    serial_prefix: &'static str,
    tr181: bool,
    hardware: &'static str,
    firmware: &'static [&'static str],
}

const MODELS: &[Model] = &[
    Model {
        oui: "00236A",
        manufacturer: "SmartRG",
        product_class: "SmartRG585",
        serial_prefix: "SMRT",
        tr181: false,
        hardware: "SR585n-A1",
        firmware: &["2.5.0.7", "2.6.1.3", "2.6.2.1"],
    },
    Model {
        oui: "00A0C5",
        manufacturer: "ZyXEL",
        product_class: "VMG8924-B10A",
        serial_prefix: "S1",
        tr181: false,
        hardware: "VMG8924-B10A",
        firmware: &["V5.13(AAKL.5)C0", "V5.13(AAKL.7)C0"],
    },
    Model {
        oui: "50C7BF",
        manufacturer: "TP-Link",
        product_class: "ArcherVR600",
        serial_prefix: "2218",
        tr181: true,
        hardware: "Archer VR600 v3",
        firmware: &["1.2.0 0.9.1 v5006.0", "1.3.1 0.9.1 v5006.0"],
    },
    Model {
        oui: "3C81D8",
        manufacturer: "Sagemcom",
        product_class: "FAST5866T",
        serial_prefix: "LK",
        tr181: true,
        hardware: "FAST5866T-v2",
        firmware: &["SG4K100044", "SG4K10004C"],
    },
];

const TAGS: &[&str] = &[
    "residential",
    "business",
    "lab",
    "gold",
    "fiber",
    "dsl",
    "firmware-pilot",
    "vip",
];

const FAULT_PRONE_CODES: &[u16] = &[9001, 9002, 9004];

const DAY_MS: i64 = 86_400_000;

pub(crate) fn populate(acs: &mut Acs, count: usize) {
    let now = acs.now();
    let mut faulty = Vec::new();
    let mut offline = Vec::new();
    let mut serials = std::collections::HashSet::new();
    for i in 0..count {
        let model = if i == 0 {
            &MODELS[0]
        } else {
            acs.rng().pick(MODELS)
        };
        let serial = loop {
            let s = if i == 0 {
                "SMRT00236a42".to_owned()
            } else if model.serial_prefix == "SMRT" {
                format!(
                    "SMRT{}{:02x}",
                    model.oui.to_lowercase(),
                    acs.rng().below(256)
                )
            } else {
                format!("{}{:08}", model.serial_prefix, acs.rng().below(100_000_000))
            };
            if serials.insert(s.clone()) {
                break s;
            }
        };
        let behaviour = match i % 10 {
            3 => Behaviour::Offline,
            7 => Behaviour::Faulty(*acs.rng().pick(FAULT_PRONE_CODES)),
            _ => Behaviour::Online,
        };
        let doc = device_doc(acs, i, model, &serial, behaviour, now);
        let id = doc["_id"].as_str().unwrap_or_default().to_owned();
        match behaviour {
            Behaviour::Offline => offline.push((id, model)),
            Behaviour::Faulty(code) => faulty.push((id, model, code)),
            Behaviour::Online => {}
        }
        acs.insert_device(doc, behaviour);
    }

    for model in MODELS {
        for version in model.firmware {
            let name = format!(
                "{}-{}.bin",
                model.product_class,
                version.replace([' ', '(', ')'], "_")
            );
            let len = 8_000_000 + acs.rng().below(24_000_000);
            acs.insert_file(json!({
                "_id": name,
                "filename": name,
                "length": len,
                "chunkSize": 261_120,
                "uploadDate": iso8601(now - 40 * DAY_MS),
                "metadata": {
                    "fileType": "1 Firmware Upgrade Image",
                    "oui": model.oui,
                    "productClass": model.product_class,
                    "version": version,
                },
            }));
        }
    }
    acs.insert_file(json!({
        "_id": "default-config.xml",
        "filename": "default-config.xml",
        "length": 18_213,
        "chunkSize": 261_120,
        "uploadDate": iso8601(now - 90 * DAY_MS),
        "metadata": {"fileType": "3 Vendor Configuration File", "oui": "", "productClass": "", "version": ""},
    }));

    // A realistic backlog: offline devices have a queued task, fault-prone ones a faulted task.
    for (id, _) in &offline {
        acs.seed_pending_task(id, json!({"name": "reboot"}));
    }
    for (id, model, code) in &faulty {
        let firmware = model.firmware[model.firmware.len() - 1];
        let file = format!(
            "{}-{}.bin",
            model.product_class,
            firmware.replace([' ', '(', ')'], "_")
        );
        acs.seed_faulted_task(id, json!({"name": "download", "file": file}), *code, 1);
    }

    acs.insert_preset(
        "inform",
        json!({"weight": 0, "channel": "inform", "events": {"2 PERIODIC": true},
               "precondition": "", "configurations": [{"type": "provision", "name": "inform", "args": null}]}),
    );
    acs.insert_preset(
        "bootstrap",
        json!({"weight": 0, "channel": "bootstrap", "events": {"0 BOOTSTRAP": true},
               "precondition": "", "configurations": [{"type": "provision", "name": "bootstrap", "args": null}]}),
    );
    acs.insert_provision(
        "inform",
        "// Refresh the values the dashboards show, at most once an hour.\n\
         const hourAgo = Date.now() - 3600 * 1000;\n\
         declare(\"InternetGatewayDevice.DeviceInfo.SoftwareVersion\", {value: hourAgo});\n\
         declare(\"Device.DeviceInfo.SoftwareVersion\", {value: hourAgo});\n",
    );
    acs.insert_provision(
        "bootstrap",
        "// A factory-fresh or reset device: forget what we knew and rediscover its tree.\n\
         clear(\"Device\", Date.now());\n\
         clear(\"InternetGatewayDevice\", Date.now());\n",
    );
}

fn device_doc(
    acs: &mut Acs,
    index: usize,
    model: &Model,
    serial: &str,
    behaviour: Behaviour,
    now: i64,
) -> Value {
    let id = format!("{}-{}-{}", model.oui, model.product_class, serial);
    let last_inform = match behaviour {
        Behaviour::Offline => now - DAY_MS - acs.rng().below(13 * DAY_MS as u64) as i64,
        _ => now - acs.rng().below(3_600_000) as i64,
    };
    let registered = now - 30 * DAY_MS - acs.rng().below(900 * DAY_MS as u64) as i64;
    let ts = iso8601(last_inform);
    let firmware = *acs.rng().pick(model.firmware);
    let uptime = acs.rng().below(3_000_000);
    let ip = format!(
        "100.{}.{}.{}",
        64 + acs.rng().below(64),
        acs.rng().below(256),
        1 + acs.rng().below(254)
    );
    let hosts = acs.rng().below(24);
    let channel = *acs.rng().pick(&[1u64, 6, 11, 36, 44, 149]);
    let ssid = format!(
        "{}-{}",
        model.manufacturer.to_uppercase().replace('-', ""),
        &serial[serial.len() - 4..]
    );

    let mut tags = Vec::new();
    for _ in 0..acs.rng().below(3) {
        let t = *acs.rng().pick(TAGS);
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if index == 0 && !tags.contains(&"lab") {
        tags.push("lab");
    }

    let mut root = Map::new();
    root.insert("_id".into(), json!(id));
    root.insert(
        "_deviceId".into(),
        json!({"_Manufacturer": model.manufacturer, "_OUI": model.oui,
               "_ProductClass": model.product_class, "_SerialNumber": serial}),
    );
    root.insert("_registered".into(), json!(iso8601(registered)));
    root.insert("_lastInform".into(), json!(ts));
    root.insert(
        "_lastBoot".into(),
        json!(iso8601(last_inform - uptime as i64 * 1000)),
    );
    if !tags.is_empty() {
        root.insert("_tags".into(), json!(tags));
    }
    let mut doc = Value::Object(root);
    let mut p = |path: &str, value: Value, ty: &str, writable: bool| {
        set(&mut doc, path, value, ty, writable, &ts)
    };

    let cr_url = format!(
        "http://{ip}:7547/{}",
        &serial[serial.len() - 6.min(serial.len())..]
    );
    // TR-181 (`Device.`) and TR-098 (`InternetGatewayDevice.`) share these paths under their root.
    let r = if model.tr181 {
        "Device"
    } else {
        "InternetGatewayDevice"
    };
    p(
        &format!("{r}.DeviceInfo.Manufacturer"),
        json!(model.manufacturer),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.ManufacturerOUI"),
        json!(model.oui),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.ProductClass"),
        json!(model.product_class),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.SerialNumber"),
        json!(serial),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.HardwareVersion"),
        json!(model.hardware),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.SoftwareVersion"),
        json!(firmware),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.DeviceInfo.UpTime"),
        json!(uptime),
        "xsd:unsignedInt",
        false,
    );
    p(
        &format!("{r}.ManagementServer.URL"),
        json!("http://acs.example.net:7547/"),
        "xsd:string",
        true,
    );
    p(
        &format!("{r}.ManagementServer.PeriodicInformEnable"),
        json!(true),
        "xsd:boolean",
        true,
    );
    p(
        &format!("{r}.ManagementServer.PeriodicInformInterval"),
        json!(3600),
        "xsd:unsignedInt",
        true,
    );
    p(
        &format!("{r}.ManagementServer.ConnectionRequestURL"),
        json!(cr_url),
        "xsd:string",
        false,
    );
    p(
        &format!("{r}.ManagementServer.Username"),
        json!(id),
        "xsd:string",
        true,
    );
    p(
        &format!("{r}.ManagementServer.Password"),
        json!(""),
        "xsd:string",
        true,
    );
    if model.tr181 {
        p(
            &format!("{r}.WiFi.Radio.1.Channel"),
            json!(channel),
            "xsd:unsignedInt",
            true,
        );
        p(
            &format!("{r}.WiFi.SSID.1.Enable"),
            json!(true),
            "xsd:boolean",
            true,
        );
        p(
            &format!("{r}.WiFi.SSID.1.SSID"),
            json!(ssid),
            "xsd:string",
            true,
        );
        p(
            &format!("{r}.WiFi.AccessPoint.1.Security.ModeEnabled"),
            json!("WPA2-Personal"),
            "xsd:string",
            true,
        );
        p(
            &format!("{r}.WiFi.AccessPoint.1.Security.KeyPassphrase"),
            json!(""),
            "xsd:string",
            true,
        );
        p(
            &format!("{r}.IP.Interface.1.IPv4Address.1.IPAddress"),
            json!(ip),
            "xsd:string",
            false,
        );
        p(
            &format!("{r}.Hosts.HostNumberOfEntries"),
            json!(hosts),
            "xsd:unsignedInt",
            false,
        );
        p(
            &format!("{r}.Time.NTPServer1"),
            json!("pool.ntp.org"),
            "xsd:string",
            true,
        );
    } else {
        let wlan = format!("{r}.LANDevice.1.WLANConfiguration.1");
        p(&format!("{wlan}.Enable"), json!(true), "xsd:boolean", true);
        p(&format!("{wlan}.SSID"), json!(ssid), "xsd:string", true);
        p(
            &format!("{wlan}.Channel"),
            json!(channel),
            "xsd:unsignedInt",
            true,
        );
        p(
            &format!("{wlan}.BeaconType"),
            json!("11i"),
            "xsd:string",
            true,
        );
        p(
            &format!("{wlan}.KeyPassphrase"),
            json!(""),
            "xsd:string",
            true,
        );
        p(
            &format!("{r}.LANDevice.1.Hosts.HostNumberOfEntries"),
            json!(hosts),
            "xsd:unsignedInt",
            false,
        );
        let wan = format!("{r}.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1");
        p(
            &format!("{wan}.ExternalIPAddress"),
            json!(ip),
            "xsd:string",
            false,
        );
        p(
            &format!("{wan}.ConnectionStatus"),
            json!("Connected"),
            "xsd:string",
            false,
        );
        p(
            &format!("{r}.Time.NTPServer1"),
            json!("pool.ntp.org"),
            "xsd:string",
            true,
        );
    }
    doc
}

/// Inserts a parameter leaf, creating GenieACS-style object nodes on the way.
fn set(doc: &mut Value, path: &str, value: Value, ty: &str, writable: bool, ts: &str) {
    let mut cur = doc;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let Value::Object(map) = cur else { return };
        let entry = map.entry((*seg).to_owned()).or_insert_with(|| {
            if last {
                json!({})
            } else {
                json!({"_object": true, "_writable": false, "_timestamp": ts})
            }
        });
        if last {
            *entry = json!({"_value": value, "_type": ty, "_writable": writable, "_timestamp": ts});
            return;
        }
        cur = entry;
    }
}
