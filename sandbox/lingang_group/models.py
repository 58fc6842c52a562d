"""Tables of the Lingang Group's industry system (临港集团产业信息系统), in its own naming.

The group's IT department names tables `T_<subject>` and columns by pinyin initials
(QYMC = 企业名称, TYSHXYDM = 统一社会信用代码, GXSJ = 更新时间…), keeps local Shanghai
wall-clock times without a zone, amounts in 万元, and marks deletions with SCBZ = '1'
(删除标志) rather than a timestamp. MariaDB in production; SQLite when embedded.
"""
from __future__ import annotations

from sqlalchemy import CHAR, BigInteger, Date, DateTime, Index, Integer, MetaData, Numeric, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = BigInteger().with_variant(Integer(), "sqlite")
LOCAL_TIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")  # naive: Asia/Shanghai
WAN = Numeric(14, 4)
_OPTS = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


class Base(DeclarativeBase):
    metadata = MetaData()


def _audit() -> tuple:
    return (mapped_column(LOCAL_TIME, nullable=False, comment="更新时间（北京时间）"),
            mapped_column(CHAR(1), nullable=False, default="0", comment="删除标志（0 有效，1 删除）"))


class Enterprise(Base):
    __tablename__ = "T_QY_JBXX"
    __table_args__ = (Index("IX_QY_GXSJ", "GXSJ", "QYID"), {"comment": "园区企业基本信息", **_OPTS})
    QYID: Mapped[int] = mapped_column(ID, primary_key=True, comment="企业ID")
    QYMC: Mapped[str] = mapped_column(String(200), comment="企业名称")
    TYSHXYDM: Mapped[str] = mapped_column(String(18), comment="统一社会信用代码")
    QYLX: Mapped[str | None] = mapped_column(String(20), comment="企业类型")
    SSYQ: Mapped[str | None] = mapped_column(String(40), comment="所属园区")
    CYLB: Mapped[str | None] = mapped_column(String(20), comment="产业类别")
    CJRHZT: Mapped[str | None] = mapped_column(String(10), comment="产教融合型企业状态")
    RDRQ = mapped_column(Date, nullable=True, comment="认定日期")
    ZCDZ: Mapped[str | None] = mapped_column(String(200), comment="注册地址")
    GXSJ, SCBZ = _audit()


class Cooperation(Base):
    __tablename__ = "T_XQHZ_XM"
    __table_args__ = (Index("IX_XQHZ_GXSJ", "GXSJ", "XMID"), {"comment": "校企合作项目", **_OPTS})
    XMID: Mapped[int] = mapped_column(ID, primary_key=True, comment="项目ID")
    XMBH: Mapped[str] = mapped_column(String(20), comment="项目编号")
    HZYX: Mapped[str | None] = mapped_column(String(200), comment="合作院校")
    YXDM: Mapped[str | None] = mapped_column(String(18), comment="院校统一社会信用代码")
    HZQY: Mapped[str | None] = mapped_column(String(200), comment="合作企业")
    QYDM: Mapped[str | None] = mapped_column(String(18), comment="企业统一社会信用代码")
    HZLX: Mapped[str | None] = mapped_column(String(20), comment="合作类型")
    CYLB: Mapped[str | None] = mapped_column(String(20), comment="产业类别")
    KSRQ = mapped_column(Date, nullable=True, comment="开始日期")
    JSRQ = mapped_column(Date, nullable=True, comment="结束日期")
    TRJE = mapped_column(WAN, nullable=True, comment="投入金额（万元）")
    HZZT: Mapped[str | None] = mapped_column(String(10), comment="合作状态")
    GXSJ, SCBZ = _audit()


class TrainingBase(Base):
    __tablename__ = "T_SXJD"
    __table_args__ = (Index("IX_SXJD_GXSJ", "GXSJ", "JDID"), {"comment": "实训基地", **_OPTS})
    JDID: Mapped[int] = mapped_column(ID, primary_key=True, comment="基地ID")
    JDMC: Mapped[str] = mapped_column(String(200), comment="基地名称")
    JDLX: Mapped[str | None] = mapped_column(String(20), comment="基地类型")
    YTDW: Mapped[str | None] = mapped_column(String(200), comment="依托单位")
    YTDWDM: Mapped[str | None] = mapped_column(String(18), comment="依托单位统一社会信用代码")
    HZYX: Mapped[str | None] = mapped_column(String(200), comment="合作院校")
    YXDM: Mapped[str | None] = mapped_column(String(18), comment="院校统一社会信用代码")
    SZQ: Mapped[str | None] = mapped_column(String(20), comment="所在区")
    CYLB: Mapped[str | None] = mapped_column(String(20), comment="产业类别")
    DZ: Mapped[str | None] = mapped_column(String(200), comment="地址")
    RNRS = mapped_column(Integer, nullable=True, comment="容纳人数")
    JLRQ = mapped_column(Date, nullable=True, comment="建立日期")
    SFYX: Mapped[str | None] = mapped_column(String(2), comment="是否运行（是/否）")
    GXSJ, SCBZ = _audit()


class Meta(Base):
    __tablename__ = "T_SANDBOX_META"
    __table_args__ = (_OPTS,)
    K: Mapped[str] = mapped_column(String(40), primary_key=True)
    V: Mapped[str] = mapped_column(String(200))


TABLES = ("T_QY_JBXX", "T_XQHZ_XM", "T_SXJD")
PRIMARY_KEYS = {"T_QY_JBXX": "QYID", "T_XQHZ_XM": "XMID", "T_SXJD": "JDID"}
