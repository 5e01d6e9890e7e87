-- rule known_ids: every {{column}} of {{table}} is a {{other_column}} of {{other}}.
with known as (
    select distinct {{other_column}} as id from {{other}}
)
select t.* from {{table}} as t
anti join known on known.id = t.{{column}}
limit 10
