-- rule not_self: no row of {{table}} pairs {{column}} with itself in {{other_column}}.
select * from {{table}}
where {{column}} = {{other_column}}
limit 10
