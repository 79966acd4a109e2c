//! The pipeline's metrics, named after Azure's MedTech metrics (iomt-fhir's `IomtMetrics`)
//! in Prometheus' style, each labelled with the instance:
//! `medtech_device_event_total` (DeviceEvent), `medtech_normalized_event_total`
//! (NormalizedEvent), `medtech_dropped_event_total` (DroppedEvent: messages no template
//! matched), `medtech_measurement_total` (Measurement), `medtech_measurement_group_total`
//! (MeasurementGroup), `medtech_fhir_resource_saved_total{resource_type,operation}`
//! (FhirResourceSaved: Created, Updated, NoOperation), `medtech_errors_total{stage,error_type,
//! severity,name}` (Azure's error metric with its ConnectorOperation, ErrorType and
//! ErrorSeverity dimensions), `medtech_dead_letter_total`, and the latencies
//! `medtech_device_event_processing_latency_seconds` (enqueued to normalized) and
//! `medtech_measurement_ingestion_latency_seconds` (enqueued to saved in FHIR). Not Azure's:
//! `medtech_normalization_seconds_total`, the time windows spent normalizing and grouping,
//! so that the stage's own rate (device events per second of it) can be told apart from the
//! FHIR writes that follow.

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct PipelineMetrics {
    pub device_events: IntCounterVec,
    pub normalized_events: IntCounterVec,
    pub dropped_events: IntCounterVec,
    pub measurements: IntCounterVec,
    pub measurement_groups: IntCounterVec,
    pub resources_saved: IntCounterVec,
    pub errors: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub normalization_seconds: CounterVec,
    pub processing_latency: HistogramVec,
    pub ingestion_latency: HistogramVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn latency(name: &str, help: &str) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(vec![
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]),
        &["instance"],
    )
    .expect("static metric definition")
}

impl PipelineMetrics {
    pub fn new() -> Self {
        let i = &["instance"][..];
        Self {
            device_events: counter("medtech_device_event_total", "Device messages read from the device topic (Azure: DeviceEvent)", i),
            normalized_events: counter("medtech_normalized_event_total", "Normalized measurements produced (Azure: NormalizedEvent)", i),
            dropped_events: counter("medtech_dropped_event_total", "Device messages no template matched (Azure: DroppedEvent)", i),
            measurements: counter("medtech_measurement_total", "Measurements grouped for FHIR conversion (Azure: Measurement)", i),
            measurement_groups: counter("medtech_measurement_group_total", "Measurement groups converted to Observations (Azure: MeasurementGroup)", i),
            resources_saved: counter("medtech_fhir_resource_saved_total", "FHIR resources saved, by type and operation: Created, Updated, NoOperation (Azure: FhirResourceSaved)", &["instance", "resource_type", "operation"]),
            errors: counter("medtech_errors_total", "Errors by stage (Normalization, Grouping, FHIRConversion), type and severity (Azure: TotalErrors)", &["instance", "stage", "error_type", "severity", "name"]),
            dead_letters: counter("medtech_dead_letter_total", "Device messages sent to the dead-letter topic", i),
            normalization_seconds: CounterVec::new(Opts::new("medtech_normalization_seconds_total", "Time spent normalizing and grouping windows of device messages"), i).expect("static metric definition"),
            processing_latency: latency("medtech_device_event_processing_latency_seconds", "From a message's enqueued time to its normalization (Azure: DeviceEventProcessingLatency)"),
            ingestion_latency: latency("medtech_measurement_ingestion_latency_seconds", "From a message's enqueued time to its Observation saved in FHIR (Azure: MeasurementIngestionLatency)"),
        }
    }

    /// Adds every metric to the service's registry (served at `/metrics`).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.device_events.clone()))?;
        registry.register(Box::new(self.normalized_events.clone()))?;
        registry.register(Box::new(self.dropped_events.clone()))?;
        registry.register(Box::new(self.measurements.clone()))?;
        registry.register(Box::new(self.measurement_groups.clone()))?;
        registry.register(Box::new(self.resources_saved.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.dead_letters.clone()))?;
        registry.register(Box::new(self.normalization_seconds.clone()))?;
        registry.register(Box::new(self.processing_latency.clone()))?;
        registry.register(Box::new(self.ingestion_latency.clone()))?;
        Ok(())
    }
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self::new()
    }
}
