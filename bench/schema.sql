-- The benchmark's application: a small shop with accounts, a catalogue, orders and their
-- lines, a click stream, support messages and binary attachments. bench/run.sh creates this
-- schema, then fills it with the benchgen.fill_* functions (id ranges, so the append-only
-- change can add rows with the same generators). Data is random but shaped like an
-- application's: word-salad text (with non-ASCII words), jsonb documents, numerics,
-- timestamps, uuids, and incompressible bytea.

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'benchmark shop';

CREATE TABLE app.accounts (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    name text NOT NULL,
    plan text NOT NULL,
    balance numeric(12,2) NOT NULL,
    score double precision,
    profile jsonb NOT NULL,
    bio text,
    created_at timestamptz NOT NULL
);
CREATE TABLE app.products (
    id bigint PRIMARY KEY,
    sku text NOT NULL,
    title text NOT NULL,
    description text NOT NULL,
    price numeric(10,2) NOT NULL,
    stock integer NOT NULL,
    attributes jsonb NOT NULL
);
CREATE TABLE app.orders (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL,
    status text NOT NULL CHECK (status IN ('new','paid','shipped','returned','cancelled')),
    currency char(3) NOT NULL,
    total numeric(12,2) NOT NULL,
    shipping jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE app.order_items (
    order_id bigint NOT NULL,
    line integer NOT NULL,
    product_id bigint NOT NULL,
    qty integer NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    discount numeric(4,2) NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE TABLE app.events (
    id bigint PRIMARY KEY,
    account_id bigint,
    kind text NOT NULL,
    session uuid NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE TABLE app.messages (
    id bigint PRIMARY KEY,
    account_id bigint NOT NULL,
    order_id bigint,
    subject text NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE app.attachments (
    id bigint PRIMARY KEY,
    message_id bigint NOT NULL,
    filename text NOT NULL,
    mime text NOT NULL,
    data bytea NOT NULL
);
CREATE VIEW app.daily_revenue AS
    SELECT date_trunc('day', created_at) AS day, currency, sum(total) AS total
    FROM app.orders WHERE status <> 'cancelled' GROUP BY 1, 2;

-- generators (kept in the database: the append-only change reuses them)
CREATE SCHEMA benchgen;

CREATE FUNCTION benchgen.words() RETURNS text[] LANGUAGE sql IMMUTABLE AS $f$
SELECT ARRAY['the','of','and','to','in','is','you','that','it','he','was','for','on','are','as',
 'with','his','they','at','be','this','have','from','or','one','had','by','word','but','not',
 'what','all','were','we','when','your','can','said','there','use','an','each','which','she',
 'do','how','their','if','will','up','other','about','out','many','then','them','these','so',
 'some','her','would','make','like','him','into','time','has','look','two','more','write','go',
 'see','number','no','way','could','people','my','than','first','water','been','call','who',
 'oil','its','now','find','long','down','day','did','get','come','made','may','part','order',
 'delivery','package','refund','invoice','customer','support','account','payment','shipping',
 'address','product','quality','size','colour','return','exchange','warehouse','tracking',
 'delayed','arrived','damaged','thanks','please','urgent','question','problem','solved',
 'discount','coupon','subscription','renewal','cancel','upgrade','plan','team','pro','free',
 'monday','tuesday','friday','weekend','morning','evening','today','tomorrow','yesterday',
 'café','naïve','Straße','Übung','façade','jalapeño','smörgåsbord','crème','brûlée','fiancé',
 'données','größe','łódź','żółw','čeština','пример','данные','заказ','доставка','東京','注文',
 '配送','ありがとう','قهوة','שלום','ελληνικά','😀','👍','🚚','✓','€','£','¥','—','«','»',
 'red','blue','green','black','white','small','medium','large','cotton','steel','wooden',
 'glass','leather','organic','vintage','premium','basic','deluxe','compact','portable',
 'wireless','battery','charger','cable','adapter','screen','keyboard','mouse','lamp','chair',
 'table','shelf','bottle','cup','plate','knife','fork','spoon','pan','pot','oven','fridge',
 'shirt','shoes','jacket','dress','hat','scarf','gloves','socks','bag','wallet','watch','ring']
$f$;

-- n random words
CREATE FUNCTION benchgen.salad(n bigint) RETURNS text LANGUAGE sql VOLATILE AS $f$
SELECT string_agg(w[1 + floor(random() * array_length(w, 1))::int], ' ')
FROM benchgen.words() w, generate_series(1, n)
$f$;

-- n random (incompressible) bytes
CREATE FUNCTION benchgen.noise(n bigint) RETURNS bytea LANGUAGE sql VOLATILE AS $f$
SELECT substr(decode(string_agg(md5(random()::text || i::text), ''), 'hex'), 1, n::int)
FROM generate_series(1, (n + 15) / 16) i
$f$;

CREATE FUNCTION benchgen.fill_accounts(lo bigint, hi bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.accounts
SELECT g,
       'user' || g || '@' || (ARRAY['example.com','mail.test','shop.example','corp.test'])[1 + g % 4],
       (ARRAY['Zoë','José','Łukasz','Aiko','Øyvind','Chloé','Mehmet','Ана','Li','Sam'])[1 + g % 10]
           || ' ' || initcap(benchgen.salad(1)) || '-' || (g % 9973),
       (ARRAY['free','pro','team','enterprise'])[1 + floor(random() * 4)::int],
       round((random() * 10000)::numeric, 2),
       random() * 100,
       jsonb_build_object(
           'locale', (ARRAY['en-GB','de-DE','fr-FR','ja-JP','pl-PL','ru-RU'])[1 + g % 6],
           'newsletter', random() < 0.4,
           'tags', jsonb_build_array(benchgen.salad(1), benchgen.salad(1)),
           'address', jsonb_build_object('city', initcap(benchgen.salad(1)), 'zip', lpad((random() * 99999)::int::text, 5, '0'),
                                         'street', initcap(benchgen.salad(2)) || ' ' || (1 + g % 200)),
           'last_ip', '10.' || (g % 256) || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int),
       CASE WHEN random() < 0.7 THEN benchgen.salad(5 + floor(random() * 35)::int) END,
       timestamptz '2019-01-01' + g * interval '7 minutes' + random() * interval '5 minutes'
FROM generate_series(lo, hi) g
$f$;

CREATE FUNCTION benchgen.fill_products(lo bigint, hi bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.products
SELECT g,
       'SKU-' || lpad(g::text, 8, '0'),
       initcap(benchgen.salad(2 + g % 4)),
       benchgen.salad(20 + floor(random() * 80)::int),
       round((1 + random() * 499)::numeric, 2),
       floor(random() * 1000)::int,
       jsonb_build_object('colour', benchgen.salad(1), 'weight_g', floor(random() * 5000)::int,
                          'dims', jsonb_build_array(floor(random() * 100)::int, floor(random() * 100)::int, floor(random() * 100)::int),
                          'tags', jsonb_build_array(benchgen.salad(1), benchgen.salad(1), benchgen.salad(1)))
FROM generate_series(lo, hi) g
$f$;

-- orders lo..hi and their 1-5 lines; accounts and products are picked among 1..naccounts / 1..nproducts
CREATE FUNCTION benchgen.fill_orders(lo bigint, hi bigint, naccounts bigint, nproducts bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.orders
SELECT g,
       1 + floor(random() * naccounts)::bigint,
       (ARRAY['new','paid','shipped','shipped','shipped','returned','cancelled'])[1 + floor(random() * 7)::int],
       (ARRAY['EUR','USD','GBP','JPY','PLN'])[1 + g % 5],
       round((random() * 900)::numeric, 2),
       jsonb_build_object('method', (ARRAY['standard','express','pickup'])[1 + g % 3],
                          'name', initcap(benchgen.salad(2)),
                          'line1', (1 + floor(random() * 300)::int) || ' ' || initcap(benchgen.salad(2)),
                          'city', initcap(benchgen.salad(1)), 'zip', lpad(floor(random() * 99999)::int::text, 5, '0'),
                          'country', (ARRAY['DE','FR','GB','JP','PL','US','NO'])[1 + g % 7],
                          'tracking', CASE WHEN random() < 0.6 THEN upper(substr(md5(random()::text), 1, 14)) END),
       ts, ts + random() * interval '10 days'
FROM (SELECT g, timestamptz '2020-01-01' + g * interval '90 seconds' AS ts FROM generate_series(lo, hi) g) s;
INSERT INTO app.order_items
SELECT o, l, 1 + floor(random() * nproducts)::bigint, 1 + floor(random() * 4)::int,
       round((1 + random() * 199)::numeric, 2), (ARRAY[0, 0, 0, 5, 10, 15])[1 + floor(random() * 6)::int]
FROM generate_series(lo, hi) o, generate_series(1, 1 + (o % 5)::int) l
$f$;

CREATE FUNCTION benchgen.fill_events(lo bigint, hi bigint, naccounts bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.events
SELECT g,
       CASE WHEN random() < 0.9 THEN 1 + floor(random() * naccounts)::bigint END,
       k,
       gen_random_uuid(),
       CASE k
         WHEN 'view' THEN jsonb_build_object('path', '/p/' || floor(random() * 50000)::int, 'ms', floor(random() * 2000)::int,
                                             'ref', (ARRAY['google','direct','newsletter','ads'])[1 + g % 4])
         WHEN 'search' THEN jsonb_build_object('q', benchgen.salad(1 + g % 4), 'results', floor(random() * 500)::int, 'ms', floor(random() * 900)::int)
         WHEN 'cart' THEN jsonb_build_object('sku', 'SKU-' || lpad(floor(random() * 99999)::int::text, 8, '0'), 'qty', 1 + g % 3,
                                             'price', round((random() * 300)::numeric, 2))
         ELSE jsonb_build_object('ip', '10.' || (g % 256) || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int,
                                 'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0',
                                              'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15',
                                              'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0',
                                              'curl/8.5.0'])[1 + g % 4],
                                 'ok', random() < 0.97)
       END,
       timestamptz '2023-01-01' + g * interval '2 seconds' + random() * interval '2 seconds'
FROM (SELECT g, (ARRAY['view','view','view','search','cart','login','logout'])[1 + floor(random() * 7)::int] AS k
      FROM generate_series(lo, hi) g) s
$f$;

CREATE FUNCTION benchgen.fill_messages(lo bigint, hi bigint, naccounts bigint, norders bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.messages
SELECT g,
       1 + floor(random() * naccounts)::bigint,
       CASE WHEN random() < 0.6 THEN 1 + floor(random() * norders)::bigint END,
       initcap(benchgen.salad(3 + g % 6)),
       benchgen.salad(20 + floor(random() * 180)::int),
       timestamptz '2021-01-01' + g * interval '4 minutes'
FROM generate_series(lo, hi) g
$f$;

-- attachments of 8-40 KiB of incompressible bytes, attached to messages 1..nmessages
CREATE FUNCTION benchgen.fill_attachments(lo bigint, hi bigint, nmessages bigint) RETURNS void LANGUAGE sql AS $f$
INSERT INTO app.attachments
SELECT g,
       1 + floor(random() * nmessages)::bigint,
       (ARRAY['receipt','photo','scan','invoice','label'])[1 + g % 5] || '-' || g
           || (ARRAY['.pdf','.jpg','.png','.zip'])[1 + g % 4],
       (ARRAY['application/pdf','image/jpeg','image/png','application/zip'])[1 + g % 4],
       benchgen.noise(8192 + floor(random() * 32768)::int)
FROM generate_series(lo, hi) g
$f$;
