-- Up Migration
-- A run's spec names its device and precision; runs stored before these keys
-- existed trained on the CPU in fp32, so a requeued one resumes the same way.
UPDATE runs SET spec = spec || '{"device": "cpu", "precision": "fp32"}'::jsonb WHERE NOT spec ? 'device';

-- Down Migration
UPDATE runs SET spec = spec - 'device' - 'precision';
