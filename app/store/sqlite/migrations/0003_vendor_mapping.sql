-- A generic vendor's JMESPath mapping (JSON), so a vendor of an unknown JSON shape needs data, not code.
-- NULL for every platform with its own adapter.

ALTER TABLE vendors ADD COLUMN mapping TEXT;
