-- A price comparable across currencies: the product's lowest offer price converted to the rates' base currency
-- (over all its offers, whatever their currency). Sorting and price filters use it. Existing rows start NULL;
-- the store fills them when it opens (refresh_base_prices in app/store/sqlite/offers.py), which also recomputes
-- every row when the rates file changed.

ALTER TABLE products ADD COLUMN min_price_base REAL;
CREATE INDEX products_price_base ON products (min_price_base, id);
INSERT OR IGNORE INTO meta (key, value) VALUES ('rates_version', 0);
