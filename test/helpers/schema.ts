/*
 * A database's schema as sorted lines of text, read from the catalogs over the connection given:
 * relations, columns (in order, with type, nullability, default, identity), constraints, indexes,
 * sequences, functions (an md5 of pg_get_functiondef), triggers, views, types, text search
 * configurations, extensions. Two databases on the same server describe alike when their schemas
 * are the same, whatever made them (migrations or sql/schema.sql) and whichever PostgreSQL it is;
 * what pg_dump and the catalogs print differently across versions never enters the comparison.
 * Names print unqualified for objects in public: the connection's search_path is set to public.
 */

import type pg from 'pg';

export async function describeSchema(db: pg.ClientBase): Promise<string[]> {
  await db.query(`select set_config('search_path', 'public', false)`);
  const { rows } = await db.query<{ line: string }>(SCHEMA_LINES);
  return rows.map((r) => r.line).sort();
}

const OURS = `not in ('pg_catalog', 'information_schema', 'pg_toast') and %s not like 'pg_temp_%' and %s not like 'pg_toast_temp_%'`;
const ours = (col: string) => `${col} ${OURS.replaceAll('%s', col)}`;

const SCHEMA_LINES = `
select 'schema ' || nspname as line from pg_namespace n where ${ours('n.nspname')}
union all
select format('relation %s kind=%s persistence=%s options=%s rls=%s', c.oid::regclass, c.relkind, c.relpersistence, c.reloptions, c.relrowsecurity)
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')} and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f', 'c')
union all
select format('column %s #%s %s %s type=%s notnull=%s default=%s identity=%s generated=%s collation=%s',
              c.oid::regclass, row_number() over (partition by a.attrelid order by a.attnum), a.attname,
              c.relkind, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
              a.attidentity, a.attgenerated, nullif(a.attcollation, t.typcollation)::regcollation)
  from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where ${ours('n.nspname')} and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c') and a.attnum > 0 and not a.attisdropped
union all
-- not-null constraints (pg_constraint has them from PostgreSQL 18) are the columns' notnull above
select format('constraint %s %s %s', coalesce(nullif(k.conrelid, 0)::regclass::text, k.contypid::regtype::text), k.conname, pg_get_constraintdef(k.oid))
  from pg_constraint k join pg_namespace n on n.oid = k.connamespace
 where ${ours('n.nspname')} and k.contype <> 'n'
union all
select 'index ' || pg_get_indexdef(i.indexrelid)
  from pg_index i join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')}
union all
select format('sequence %s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned_by=%s',
              s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
              (select d.refobjid::regclass || '.' || a.attname from pg_depend d
                 join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
                where d.classid = 'pg_class'::regclass and d.objid = s.seqrelid and d.refclassid = 'pg_class'::regclass
                  and d.deptype in ('a', 'i')))
  from pg_sequence s join pg_class c on c.oid = s.seqrelid join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')}
union all
select format('function %s.%s(%s) kind=%s %s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind,
              case when p.prokind = 'a' then '' else md5(pg_get_functiondef(p.oid)) end)
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where ${ours('n.nspname')}
union all
select 'trigger ' || pg_get_triggerdef(g.oid) || ' enabled=' || g.tgenabled::text
  from pg_trigger g join pg_class c on c.oid = g.tgrelid join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')} and not g.tgisinternal
union all
select format('view %s %s', c.oid::regclass, md5(pg_get_viewdef(c.oid)))
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')} and c.relkind in ('v', 'm')
union all
select format('rule %s %s', r.rulename, md5(pg_get_ruledef(r.oid)))
  from pg_rewrite r join pg_class c on c.oid = r.ev_class join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')} and r.rulename <> '_RETURN'
union all
select format('policy %s %s %s %s %s', c.oid::regclass, p.polname, p.polcmd, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
  from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
 where ${ours('n.nspname')}
union all
select format('type %s kind=%s base=%s labels=%s', t.oid::regtype, t.typtype, nullif(t.typbasetype, 0)::regtype,
              (select string_agg(e.enumlabel, ',' order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid))
  from pg_type t join pg_namespace n on n.oid = t.typnamespace
 where ${ours('n.nspname')} and t.typtype in ('e', 'd', 'r', 'm')
union all
select format('text search configuration %s parser=%s %s', c.oid::regconfig, c.cfgparser::regproc,
              (select string_agg(t.alias || '=' || m.mapdict::regdictionary, ',' order by m.maptokentype, m.mapseqno)
                 from pg_ts_config_map m join ts_token_type(c.cfgparser) t on t.tokid = m.maptokentype
                where m.mapcfg = c.oid))
  from pg_ts_config c join pg_namespace n on n.oid = c.cfgnamespace
 where ${ours('n.nspname')}
union all
select format('text search dictionary %s template=%s options=%s', d.oid::regdictionary, d.dicttemplate, d.dictinitoption)
  from pg_ts_dict d join pg_namespace n on n.oid = d.dictnamespace
 where ${ours('n.nspname')}
union all
select 'extension ' || extname from pg_extension
`;
