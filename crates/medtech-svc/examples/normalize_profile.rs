//! Normalization and grouping alone, in process, on the device load of `make bench-medtech`
//! (blood pressure and heart rate across 1,000 devices): the CPU cost of the pipeline's first
//! stage without Kafka or FHIR, for profiling (`perf record cargo run --release --example
//! normalize_profile -- 200000`). The benchmark's own figures stay those of `make bench-medtech`.

use std::time::Instant;

// As in the service binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use hds_core::bus::Delivery;
use medtech_svc::grouping::group_measurements;
use medtech_svc::pipeline::event::device_event;
use medtech_svc::template::DeviceMapping;

const DEVICE_MAPPING: &str = r#"{
  "templateType": "CollectionContent",
  "template": [{
    "templateType": "JsonPathContent",
    "template": {
      "typeName": "bloodpressure",
      "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
      "deviceIdExpression": "$.deviceid",
      "patientIdExpression": "$.patientid",
      "timestampExpression": "$.measurementdatetime",
      "values": [
        {"valueName": "systolic", "valueExpression": "$.systolic", "required": true},
        {"valueName": "diastolic", "valueExpression": "$.diastolic", "required": true}
      ]
    }
  }, {
    "templateType": "JsonPathContent",
    "template": {
      "typeName": "heartrate",
      "typeMatchExpression": "$..[?(@heartrate)]",
      "deviceIdExpression": "$.deviceid",
      "patientIdExpression": "$.patientid",
      "timestampExpression": "$.measurementdatetime",
      "values": [
        {"valueName": "hr", "valueExpression": "$.heartrate", "required": true}
      ]
    }
  }]
}"#;

fn delivery(k: usize) -> Delivery {
    let d = k % 1000;
    let s = k / 1000;
    let when = format!(
        "2024-01-01T{:02}:{:02}:{:02}+00:00",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    );
    let body = if (s + d).is_multiple_of(2) {
        format!(
            r#"{{"systolic":{},"diastolic":{},"deviceid":"device-{d:04}","patientid":"patient-{d:04}","measurementdatetime":"{when}"}}"#,
            100 + (k * 7) % 40,
            60 + (k * 3) % 30
        )
    } else {
        format!(
            r#"{{"heartrate":{},"deviceid":"device-{d:04}","patientid":"patient-{d:04}","measurementdatetime":"{when}"}}"#,
            50 + (k * 11) % 70
        )
    };
    Delivery {
        topic: "hds.devices.bench-medtech".into(),
        partition: (d % 4) as i32,
        offset: k as i64,
        key: Some(format!("device-{d:04}").into_bytes()),
        payload: body.into_bytes(),
        headers: vec![("traceparent".into(), b"00-0-0-01".to_vec())],
        timestamp_ms: Some(1_704_067_200_000 + k as i64),
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mapping = DeviceMapping::parse(DEVICE_MAPPING).expect("mapping");
    let deliveries: Vec<Delivery> = (0..n).map(delivery).collect();
    let t = Instant::now();
    let mut measurements = Vec::with_capacity(n);
    for d in &deliveries {
        let event = device_event(d).expect("JSON");
        let out = mapping.normalize(&event);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        measurements.extend(out.measurements);
    }
    let normalized = t.elapsed().as_secs_f64();
    let count = measurements.len();
    let groups = group_measurements(measurements).len();
    let total = t.elapsed().as_secs_f64();
    println!(
        "{n} messages: normalized {count} measurements in {normalized:.2} s ({:.0}/s), grouped into {groups} groups, {total:.2} s in all ({:.0} messages/s on one core)",
        n as f64 / normalized,
        n as f64 / total
    );
}
