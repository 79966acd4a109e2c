-- Where the instance reads its device messages: the IotConnector's
-- `ingestionEndpointConfiguration` as provisioning received it (JSON; NULL: the defaults,
-- `hds.devices.{instance}` in group `medtech-svc.{instance}`). Kept with the rest of the
-- configuration so that a restarted pipeline reads the same topic in the same group.
ALTER TABLE medtech_config ADD COLUMN ingestion_json TEXT;
