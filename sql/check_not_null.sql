-- rule not_null: {{column}} of {{table}} is always filled.
select * from {{table}}
where {{column}} is null
limit 10
