"""`dns`: hubble_dns_queries_total, hubble_dns_responses_total, hubble_dns_response_types_total.

Options: `query` adds the queried name as a label; `ignoreAAAA` skips flows
whose only question type is AAAA. A denied query counts as a query with
rcode "Policy denied". When is_reply is missing (older agents), the L7 type
(REQUEST/RESPONSE) says which side the flow is.
"""

from __future__ import annotations

from hubble_bridge.mapping.metrics.base import Family, bool_flag
from hubble_bridge.mapping.metrics.facts import IS_REPLY, FlowFacts, Handler
from hubble_bridge.mapping.metrics.names import DNS_RCODE, DROPPED, L7_RESPONSE
from hubble_bridge.mapping.metrics.options import ContextOptions
from hubble_bridge.mapping.metrics.series import Counter, Series


class DnsFamily(Family):
    name = "dns"
    flags = frozenset({"query", "ignoreaaaa"})
    reads = frozenset({IS_REPLY})

    def __init__(self, context: ContextOptions, flags: dict[str, str], limit: int, errors: list[str]) -> None:
        super().__init__(context, flags, limit, errors)
        self.include_query = bool_flag(self.name, flags, "query", errors)
        self.ignore_aaaa = bool_flag(self.name, flags, "ignoreaaaa", errors)
        ctx = context.label_names
        query = ("query",) if self.include_query else ()
        labels = (*ctx, "rcode", "qtypes", "ips_returned", *query)
        # One help text for all three, as Hubble writes them (cilium pkg/hubble/metrics/dns/handler.go).
        help_text = "Number of DNS queries observed"
        self.queries = Counter("hubble.dns_queries", help_text, labels, limit)
        self.responses = Counter("hubble.dns_responses", help_text, labels, limit)
        type_labels = (*ctx, "type", "qtypes", *query)
        self.response_types = Counter("hubble.dns_response_types", help_text, type_labels, limit)

    def handler(self, kind: FlowFacts) -> Handler | None:
        if kind.l7_kind != "dns":
            return None
        include_query = self.include_query
        ignore_aaaa = self.ignore_aaaa
        context = self.context if self.has_context else None
        reply = kind.is_reply
        if reply is None:
            reply = kind.l7_type == L7_RESPONSE
        if kind.verdict == DROPPED or not reply:
            rcode = "Policy denied" if kind.verdict == DROPPED else ""
            queries = self.queries.inc

            def count_query(facts: FlowFacts) -> None:
                dns = facts.l7.dns
                qtypes_list = dns.qtypes
                if ignore_aaaa and len(qtypes_list) == 1 and qtypes_list[0] == "AAAA":
                    return
                key = (rcode, ",".join(qtypes_list), str(len(dns.ips)))
                if include_query:
                    key += (dns.query,)
                queries(key if context is None else context.values(facts) + key)

            return count_query

        responses = self.responses.inc
        response_types = self.response_types.inc

        def count_response(facts: FlowFacts) -> None:
            dns = facts.l7.dns
            qtypes_list = dns.qtypes
            if ignore_aaaa and len(qtypes_list) == 1 and qtypes_list[0] == "AAAA":
                return
            ctx = () if context is None else context.values(facts)
            qtypes = ",".join(qtypes_list)
            query = (dns.query,) if include_query else ()
            code = dns.rcode
            rcode = DNS_RCODE.get(code) or str(code)
            responses((*ctx, rcode, qtypes, str(len(dns.ips)), *query))
            for rrtype in dns.rrtypes:
                response_types((*ctx, rrtype, qtypes, *query))

        return count_response

    def series(self) -> list[Series]:
        return [self.queries, self.responses, self.response_types]
