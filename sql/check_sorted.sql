-- rule sorted: within each {{group_by}} of {{table}}, {{column}} is a number that never increases with rank.
with stepped as (
    select {{group_by}}, rank, {{column}},
        lag({{column}}) over (partition by {{group_by}} order by rank) as previous_value
    from {{table}}
)
select * from stepped
where {{column}} > previous_value or {{column}} is null or isnan({{column}}::double)
order by {{group_by}}, rank
limit 10
