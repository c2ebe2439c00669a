// Labels in English and Chinese. The language defaults from navigator.language and can be switched;
// the choice is kept in localStorage. Keys missing in one language fall back to English.

const LABELS = {
  en: {
    "app.title": "yonglink console",
    "nav.overview": "Overview",
    "ov.title": "Overview", "ov.traffic": "Messages per {step}", "ov.step_minute": "minute", "ov.step_hour": "hour",
    "ov.received": "Received", "ov.failed": "Failed", "ov.dead": "Dead-lettered", "ov.totals": "in range",
    "ov.no_routes": "No route takes this channel's messages", "ov.unrouted": "Destinations no route feeds",
    "ov.route": "Route", "ov.store": "Store", "ov.store_size": "{size} of {max}",
    "ov.down_since": "down since {time}", "ov.next_probe": "next probe {time}",
    "ov.dead_due": "oldest item dead-lettered at {time}", "ov.recovered": "recovered at {time}",
    "ov.next_retry": "next retry {time}", "ov.blocked_by": "blocked by",
    "range.1h": "1 h", "range.24h": "24 h", "range.7d": "7 d", "range.30d": "30 d",
    "health.ok": "All channels and destinations are working", "health.down": "Destination {name} down",
    "health.blocked": "Destination {name} blocked", "health.channel": "Channel {name} in error",
    "health.dead": "{n} dead letter(s) in the last hour", "health.store": "Store {pct}% full",
    "health.disabled": "Destination {name} has no connector",
    "dst.recovered": "recovered at", "dst.note": "Details", "dst.next_probe": "Next probe", "dst.dead_due": "Oldest dead-lettered at",
    "dlq.control_id": "Control ID", "dlq.org": "Sending organisation", "dlq.progress": "Replaying… {done} of {total}",
    "dlq.progress_done": "Replayed {done} of {total}",
    "kind.delivery": "delivery", "kind.mapping": "mapping",
    "msg.deliveries": "Deliveries", "msg.no_deliveries": "none",
    "state.retrying": "retrying", "state.waiting": "waiting (destination down)",
    "unit.s": "s", "unit.m": "m", "unit.h": "h", "unit.d": "d",
    "nav.channels": "Channels", "nav.destinations": "Destinations", "nav.messages": "Messages",
    "nav.dlq": "Dead letters", "nav.quality": "Data quality",
    "hdr.config": "Config", "hdr.loaded": "loaded", "hdr.reload": "Reload config",
    "hdr.reloading": "Reloading…", "hdr.reload_ok": "Config reloaded", "hdr.reload_refused": "Reload refused",
    "hdr.uptime": "up", "hdr.live": "live", "hdr.offline": "engine unreachable",
    "auth.token": "Admin token", "auth.enter": "Enter token", "auth.login": "Use token",
    "auth.logout": "Forget token", "auth.required": "This engine requires the admin token.",
    "auth.unlocked": "token set", "auth.needed_for_actions": "Actions need the admin token",
    "auth.rejected": "The token was rejected.",
    "common.name": "Name", "common.type": "Type", "common.state": "State", "common.actions": "Actions",
    "common.last_error": "Last error", "common.none": "—", "common.search": "Search",
    "common.clear": "Clear", "common.older": "Older", "common.newest": "Newest", "common.loading": "Loading…",
    "common.no_rows": "Nothing to show", "common.close": "Close", "common.cancel": "Cancel",
    "common.confirm": "Confirm", "common.channel": "Channel", "common.destination": "Destination",
    "common.since": "From", "common.until": "To", "common.any": "(any)", "common.error": "Error",
    "common.time": "Time", "common.result": "Result", "common.updated": "updated",
    "ch.title": "Channels", "ch.listen": "Listen", "ch.rate": "msg/s (1 min)", "ch.conns": "Conns",
    "ch.received": "Received", "ch.rejected": "Rejected", "ch.duplicate": "Dup", "ch.filtered": "Filtered",
    "ch.mapped": "Mapped", "ch.failed": "Failed",
    "act.start": "Start", "act.stop": "Stop", "act.pause": "Pause", "act.resume": "Resume",
    "act.done": "Channel {name}: {state}", "act.failed": "Action failed",
    "dst.title": "Destinations", "dst.queued": "Queued", "dst.sent": "Sent", "dst.retrying": "Retrying",
    "dst.dead": "Dead", "dst.oldest": "Oldest queued", "dst.blocked_by": "blocked by",
    "dst.ordering": "Ordering", "dst.chart": "Queue depth, last hour", "dst.in_flight": "In flight",
    "msg.title": "Messages", "msg.control_id": "Control ID", "msg.facility": "Sending facility",
    "msg.received_at": "Received", "msg.type": "Message type", "msg.detail": "Message",
    "msg.path": "Path", "msg.received": "received", "msg.processed": "processed",
    "msg.route": "Route", "msg.dataset": "Dataset", "msg.delivery": "Delivery",
    "msg.attempt": "Attempt", "msg.raw": "Raw message", "msg.record": "Mapped record",
    "msg.token_to_view": "Enter the admin token to view the raw message and mapped records.",
    "msg.peer": "Peer", "msg.id": "Message ID", "msg.not_found": "Message not found",
    "dlq.title": "Dead letters", "dlq.kind": "Kind", "dlq.error_text": "Error contains",
    "dlq.attempts": "Attempts", "dlq.created": "Dead since", "dlq.route": "Route",
    "dlq.replay": "Replay selected", "dlq.replay_all": "Replay all matching", "dlq.remap": "re-map from raw",
    "dlq.purge": "Purge selected", "dlq.purge_confirm": "Purge {n} dead letter(s)? This cannot be undone.",
    "dlq.replayed": "Requeued {requeued}, re-mapped {remapped}", "dlq.purged": "Purged {n}",
    "dlq.selected": "{n} selected", "dlq.select_all": "Select all", "dlq.replay_all_confirm":
      "Replay every dead letter matching the filters?",
    "q.title": "Data quality", "q.org": "Sending organisation", "q.dataset": "Dataset",
    "q.mapped": "Mapped", "q.failed": "Failed", "q.filtered": "Filtered", "q.fail_rate": "Failure rate",
    "q.invalid": "Most frequent invalid fields", "q.missing": "Most often missing", "q.since": "Counted since",
    "q.monthly": "Monthly bulletin", "q.month": "Month", "q.print": "Printable bulletin", "q.csv": "CSV",
    "q.rank": "Rank", "q.score": "Score", "q.change": "vs last month", "q.new": "new",
    "q.received": "Received", "q.rejected": "Rejected at parse", "q.unrouted": "Unrouted",
    "q.req": "Required complete", "q.opt": "Mapped optional complete", "q.valid": "Valid",
    "q.within": "Within 24 h", "q.p95": "Delay p95 (h)", "q.dups": "Duplicates", "q.worst": "Worst fields",
    "q.live": "Since the engine started", "q.loading": "Loading…",
    "state.started": "started", "state.starting": "starting", "state.paused": "paused",
    "state.stopped": "stopped", "state.error": "error", "state.reconnecting": "reconnecting",
    "state.ok": "ok", "state.down": "down", "state.blocked": "blocked", "state.disabled": "disabled",
    "state.received": "received", "state.mapped": "mapped", "state.filtered": "filtered",
    "state.failed": "failed", "state.rejected": "rejected", "state.queued": "queued",
    "state.sent": "sent", "state.dead": "dead",
    "lang.label": "Language",
    "chart.now": "now", "chart.minutes_ago": "-{n}m", "chart.spark_title": "now {last} msg/s, peak {peak}",
  },
  zh: {
    "app.title": "yonglink 运维控制台",
    "nav.overview": "总览",
    "ov.title": "总览", "ov.traffic": "每{step}消息数", "ov.step_minute": "分钟", "ov.step_hour": "小时",
    "ov.received": "接收", "ov.failed": "失败", "ov.dead": "进入死信", "ov.totals": "区间合计",
    "ov.no_routes": "没有路由接收此通道的消息", "ov.unrouted": "没有路由供给的目标",
    "ov.route": "路由", "ov.store": "存储", "ov.store_size": "{size} / {max}",
    "ov.down_since": "自 {time} 起不可用", "ov.next_probe": "下次探测 {time}",
    "ov.dead_due": "最早一条将于 {time} 进入死信", "ov.recovered": "已于 {time} 恢复",
    "ov.next_retry": "下次重试 {time}", "ov.blocked_by": "阻塞消息",
    "range.1h": "1 小时", "range.24h": "24 小时", "range.7d": "7 天", "range.30d": "30 天",
    "health.ok": "所有通道和目标运行正常", "health.down": "目标 {name} 不可用",
    "health.blocked": "目标 {name} 阻塞", "health.channel": "通道 {name} 出错",
    "health.dead": "最近 1 小时 {n} 条死信", "health.store": "存储已用 {pct}%",
    "health.disabled": "目标 {name} 没有连接器",
    "dst.recovered": "恢复于", "dst.note": "详情", "dst.next_probe": "下次探测", "dst.dead_due": "最早进入死信时间",
    "dlq.control_id": "控制号", "dlq.org": "发送机构", "dlq.progress": "正在重放… {done} / {total}",
    "dlq.progress_done": "已重放 {done} / {total}",
    "kind.delivery": "投递", "kind.mapping": "映射",
    "msg.deliveries": "投递", "msg.no_deliveries": "无",
    "state.retrying": "重试中", "state.waiting": "等待（目标不可用）",
    "unit.s": "秒", "unit.m": "分", "unit.h": "时", "unit.d": "天",
    "nav.channels": "通道", "nav.destinations": "目标", "nav.messages": "消息",
    "nav.dlq": "死信队列", "nav.quality": "数据质量",
    "hdr.config": "配置", "hdr.loaded": "加载于", "hdr.reload": "重新加载配置",
    "hdr.reloading": "正在重新加载…", "hdr.reload_ok": "配置已重新加载", "hdr.reload_refused": "重新加载被拒绝",
    "hdr.uptime": "运行", "hdr.live": "实时", "hdr.offline": "无法连接引擎",
    "auth.token": "管理令牌", "auth.enter": "输入令牌", "auth.login": "使用令牌",
    "auth.logout": "清除令牌", "auth.required": "此引擎需要管理令牌。",
    "auth.unlocked": "已设置令牌", "auth.needed_for_actions": "操作需要管理令牌",
    "auth.rejected": "令牌被拒绝。",
    "common.name": "名称", "common.type": "类型", "common.state": "状态", "common.actions": "操作",
    "common.last_error": "最近错误", "common.none": "—", "common.search": "查询",
    "common.clear": "清空", "common.older": "更早", "common.newest": "最新", "common.loading": "加载中…",
    "common.no_rows": "暂无数据", "common.close": "关闭", "common.cancel": "取消",
    "common.confirm": "确认", "common.channel": "通道", "common.destination": "目标",
    "common.since": "开始时间", "common.until": "结束时间", "common.any": "（全部）", "common.error": "错误",
    "common.time": "时间", "common.result": "结果", "common.updated": "更新于",
    "ch.title": "通道", "ch.listen": "监听地址", "ch.rate": "消息/秒（1 分钟）", "ch.conns": "连接",
    "ch.received": "接收", "ch.rejected": "拒收", "ch.duplicate": "重复", "ch.filtered": "过滤",
    "ch.mapped": "已映射", "ch.failed": "失败",
    "act.start": "启动", "act.stop": "停止", "act.pause": "暂停", "act.resume": "恢复",
    "act.done": "通道 {name}：{state}", "act.failed": "操作失败",
    "dst.title": "目标", "dst.queued": "排队", "dst.sent": "已发送", "dst.retrying": "重试中",
    "dst.dead": "死信", "dst.oldest": "最早排队", "dst.blocked_by": "阻塞消息",
    "dst.ordering": "顺序", "dst.chart": "队列深度（最近 1 小时）", "dst.in_flight": "发送中",
    "msg.title": "消息", "msg.control_id": "控制号", "msg.facility": "发送机构",
    "msg.received_at": "接收时间", "msg.type": "消息类型", "msg.detail": "消息",
    "msg.path": "处理路径", "msg.received": "已接收", "msg.processed": "已处理",
    "msg.route": "路由", "msg.dataset": "数据集", "msg.delivery": "投递",
    "msg.attempt": "尝试", "msg.raw": "原始消息", "msg.record": "映射记录",
    "msg.token_to_view": "输入管理令牌后可查看原始消息和映射记录。",
    "msg.peer": "来源地址", "msg.id": "消息编号", "msg.not_found": "未找到消息",
    "dlq.title": "死信队列", "dlq.kind": "类别", "dlq.error_text": "错误包含",
    "dlq.attempts": "尝试次数", "dlq.created": "进入死信", "dlq.route": "路由",
    "dlq.replay": "重放所选", "dlq.replay_all": "重放全部匹配项", "dlq.remap": "从原始消息重新映射",
    "dlq.purge": "清除所选", "dlq.purge_confirm": "清除 {n} 条死信？此操作不可撤销。",
    "dlq.replayed": "重新排队 {requeued} 条，重新映射 {remapped} 条", "dlq.purged": "已清除 {n} 条",
    "dlq.selected": "已选 {n} 条", "dlq.select_all": "全选", "dlq.replay_all_confirm": "重放所有符合筛选条件的死信？",
    "q.title": "数据质量", "q.org": "发送机构", "q.dataset": "数据集",
    "q.mapped": "已映射", "q.failed": "失败", "q.filtered": "过滤", "q.fail_rate": "失败率",
    "q.invalid": "最常见的无效字段", "q.missing": "最常缺失的字段", "q.since": "统计起始",
    "q.monthly": "数据质量月度通报", "q.month": "月份", "q.print": "打印版通报", "q.csv": "导出 CSV",
    "q.rank": "排名", "q.score": "综合得分", "q.change": "较上月", "q.new": "新增",
    "q.received": "接收消息", "q.rejected": "解析拒收", "q.unrouted": "未路由",
    "q.req": "必填项完整率", "q.opt": "已映射选填项完整率", "q.valid": "有效率",
    "q.within": "24小时内上报率", "q.p95": "时效 P95(小时)", "q.dups": "重复记录", "q.worst": "问题最多的字段",
    "q.live": "自引擎启动以来", "q.loading": "加载中…",
    "state.started": "运行中", "state.starting": "启动中", "state.paused": "已暂停",
    "state.stopped": "已停止", "state.error": "错误", "state.reconnecting": "重连中",
    "state.ok": "正常", "state.down": "不可用", "state.blocked": "阻塞", "state.disabled": "已禁用",
    "state.received": "已接收", "state.mapped": "已映射", "state.filtered": "已过滤",
    "state.failed": "失败", "state.rejected": "已拒收", "state.queued": "排队", "state.sent": "已发送",
    "state.dead": "死信",
    "lang.label": "语言",
    "chart.now": "现在", "chart.minutes_ago": "-{n} 分钟", "chart.spark_title": "当前 {last} 条/秒，峰值 {peak}",
  },
};

const KEY = "yonglink.lang";

export function defaultLang() {
  const saved = localStorage.getItem(KEY);
  if (saved && LABELS[saved]) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current = defaultLang();

export function lang() { return current; }

export function setLang(value) {
  current = LABELS[value] ? value : "en";
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
}

/** The label for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars) {
  let text = LABELS[current][key] ?? LABELS.en[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

/** A state name in the current language (unknown states are shown as they are). */
export function stateLabel(state) {
  const key = `state.${state}`;
  return LABELS.en[key] ? t(key) : String(state ?? "");
}
