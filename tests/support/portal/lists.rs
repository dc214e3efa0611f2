//! List results (§3.3, SLDN object-filters): objectFilter conditions and orderBy, then
//! resultLimit paging, with `SoftLayer-Total-Items` counted after filtering.

use serde_json::Value;

use super::error::ApiError;
use super::routes::Answer;

/// Filters, sorts and pages a list; `SoftLayer-Total-Items` is the count after filtering.
pub(crate) fn list_answer(
    items: Vec<Value>,
    filter: Option<&Value>,
    limit: Option<(usize, usize)>,
) -> Result<Answer, ApiError> {
    let mut conditions = Vec::new();
    if let Some(filter) = filter {
        collect_conditions(filter, &mut Vec::new(), &mut conditions);
    }
    let mut kept = Vec::new();
    for item in items {
        let mut keep = true;
        for condition in conditions.iter().filter(|c| !c.is_order_by()) {
            if !condition.matches(&item)? {
                keep = false;
                break;
            }
        }
        if keep {
            kept.push(item);
        }
    }
    let mut order_by: Vec<(i64, &Condition, bool)> = conditions
        .iter()
        .filter(|c| c.is_order_by())
        .map(|c| (c.sort_order(), c, c.descending()))
        .collect();
    order_by.sort_by_key(|(priority, _, _)| *priority);
    if !order_by.is_empty() {
        kept.sort_by(|a, b| {
            for (_, condition, descending) in &order_by {
                let ordering = compare_values(condition.lookup(a), condition.lookup(b));
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != std::cmp::Ordering::Equal {
                    return ordering;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let total = kept.len();
    let page: Vec<Value> = match limit {
        Some((offset, limit)) => kept.into_iter().skip(offset).take(limit).collect(),
        None => kept,
    };
    Ok(Answer {
        value: Value::Array(page),
        total_items: Some(total),
        resend_hook: None,
    })
}

struct Condition {
    path: Vec<String>,
    operation: Value,
    options: Vec<(String, Vec<Value>)>,
}

/// Walks a filter: every object with an "operation" is a condition on the property path
/// that leads to it. Objects without one are descended into; other values are ignored, as
/// the API "tends to just ignore" what it does not understand.
fn collect_conditions(filter: &Value, path: &mut Vec<String>, out: &mut Vec<Condition>) {
    let Value::Object(object) = filter else {
        return;
    };
    if let Some(operation) = object.get("operation") {
        let options = object
            .get("options")
            .and_then(Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(|o| {
                        let name = o.get("name")?.as_str()?.to_string();
                        let values = match o.get("value")? {
                            Value::Array(values) => values.clone(),
                            single => vec![single.clone()],
                        };
                        Some((name, values))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Condition {
            path: path.clone(),
            operation: operation.clone(),
            options,
        });
        return;
    }
    for (key, value) in object {
        path.push(key.clone());
        collect_conditions(value, path, out);
        path.pop();
    }
}

impl Condition {
    fn option(&self, name: &str) -> Option<&[Value]> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn is_order_by(&self) -> bool {
        self.operation.as_str() == Some("orderBy")
    }

    fn descending(&self) -> bool {
        self.option("sort")
            .and_then(|v| v.first())
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("DESC"))
    }

    fn sort_order(&self) -> i64 {
        self.option("sortOrder")
            .and_then(|v| v.first())
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The property at the path (`None` if absent or null).
    fn lookup<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        let mut value = item;
        for key in &self.path {
            value = value.get(key)?;
        }
        (!value.is_null()).then_some(value)
    }

    fn matches(&self, item: &Value) -> Result<bool, ApiError> {
        let actual = self.lookup(item);
        match &self.operation {
            Value::String(op) => match op.as_str() {
                "in" | "not in" => {
                    let values = self.option("data").unwrap_or(&[]);
                    let found = values.iter().any(|v| equals(actual, v));
                    Ok(found == (op == "in"))
                }
                "or" | "and" => {
                    let values = self.option("data").unwrap_or(&[]);
                    let mut results = Vec::new();
                    for v in values {
                        results.push(match v {
                            Value::String(s) => literal(s, actual)?,
                            other => equals(actual, other),
                        });
                    }
                    Ok(if op == "or" {
                        results.iter().any(|r| *r)
                    } else {
                        results.iter().all(|r| *r)
                    })
                }
                "isDate" | "lessThanDate" | "greaterThanDate" | "betweenDate" => {
                    Err(filter_not_implemented(op))
                }
                _ => literal(op, actual),
            },
            other => Ok(equals(actual, other)),
        }
    }
}

fn filter_not_implemented(what: &str) -> ApiError {
    ApiError::new(
        500,
        "SoftLayer_Exception_NotImplemented",
        format!("local test portal: object filter operation '{what}' is not implemented here"),
    )
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn equals(actual: Option<&Value>, expected: &Value) -> bool {
    actual.is_some_and(|a| as_text(a) == as_text(expected))
}

/// SLDN's literal operators: `value`, `!= value`, `> value`, `^= value`, `_= value`, ...
fn literal(expression: &str, actual: Option<&Value>) -> Result<bool, ApiError> {
    let trimmed = expression.trim();
    match trimmed {
        "not null" => return Ok(actual.is_some()),
        "is null" => return Ok(actual.is_none()),
        _ => {}
    }
    const OPERATORS: [&str; 14] = [
        "!^=", "!$=", "!*=", "!=", ">=", "<=", "^=", "$=", "*=", "_=", "!~", "~", ">", "<",
    ];
    for operator in OPERATORS {
        let Some(operand) = trimmed.strip_prefix(operator) else {
            continue;
        };
        let operand = operand.trim();
        if operand.contains("sysdate") || operand.contains("currentDate") {
            return Err(filter_not_implemented(trimmed));
        }
        let Some(actual) = actual.map(as_text) else {
            return Ok(false);
        };
        let result = match operator {
            "!^=" => !actual.starts_with(operand),
            "!$=" => !actual.ends_with(operand),
            "!*=" => !actual.contains(operand),
            "!=" => actual != operand,
            "^=" => actual.starts_with(operand),
            "$=" => actual.ends_with(operand),
            "*=" => actual.contains(operand),
            "_=" => actual.to_lowercase() == operand,
            "~" | "!~" => return Err(filter_not_implemented(operator)),
            _ => {
                let ordering = compare_text(&actual, operand);
                match operator {
                    ">=" => ordering.is_ge(),
                    "<=" => ordering.is_le(),
                    ">" => ordering.is_gt(),
                    _ => ordering.is_lt(),
                }
            }
        };
        return Ok(result);
    }
    // No operator: equality with the value as given.
    Ok(actual.is_some_and(|a| as_text(a) == expression))
}

/// Numbers compare as numbers, everything else as text.
fn compare_text(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// For sorting: absent values first.
fn compare_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => compare_text(&as_text(a), &as_text(b)),
    }
}
