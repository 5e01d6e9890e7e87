-- rule unique: at most one row of {{table}} per ({{key}}).
-- Each row is compared with the previous one in key order (one sort, no hash table): ~5x faster than
-- a group by on 25M ratings.
with ordered as (
    select {{key}},
        row({{key}}) as this_key,
        lag(row({{key}})) over (order by {{key}}) as previous_key
    from {{table}}
)
select {{key}} from ordered
where this_key = previous_key
limit 10
