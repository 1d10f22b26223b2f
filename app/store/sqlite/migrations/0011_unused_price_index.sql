-- products_price (min_price, id) served the price sort before prices were compared in the base currency
-- (0002_price_base.sql); every price sort and filter reads products_price_base since, so the index only cost each
-- product write one more B-tree.
DROP INDEX IF EXISTS products_price;
